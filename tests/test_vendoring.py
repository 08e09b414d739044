"""The pinned llama.cpp fetch script: idempotent, verifies the hash, says what to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "third_party" / "fetch_llama_cpp.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_tree_is_current_and_fetch_is_idempotent() -> None:
    assert run("--check").returncode == 0
    again = run()
    assert again.returncode == 0 and "is current" in again.stdout
    assert (ROOT / "third_party" / "llama.cpp" / "include" / "llama.h").is_file()


def test_wrong_hash_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    fake.write_bytes(b"not the pinned sdist")
    out = run("--force", "--sdist", str(fake))
    assert out.returncode == 1
    assert "sha256 mismatch" in out.stderr and "llama_cpp.pin" in out.stderr
    assert run("--check").returncode == 0  # the existing tree was left alone


def test_pin_names_package_version_hash_and_commit() -> None:
    pin = (ROOT / "third_party" / "llama_cpp.pin").read_text()
    for key in ("package = llama-cpp-python", "version = 0.3.36", "sha256 = ", "commit = "):
        assert key in pin
    ignored = (ROOT / ".gitignore").read_text()
    assert "/third_party/llama.cpp/" in ignored
