"""The package is typed: the committed extension stub matches the extension, mypy --strict passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "llama_mtp"


def test_py_typed_marker() -> None:
    assert (PACKAGE / "py.typed").is_file()


@pytest.mark.skipif(shutil.which("pybind11-stubgen") is None, reason="pybind11-stubgen not installed")
def test_core_stub_is_current(tmp_path: Path) -> None:
    """Regenerate with: cd python && pybind11-stubgen llama_mtp._core -o . (see README)."""
    subprocess.run(["pybind11-stubgen", "llama_mtp._core", "-o", str(tmp_path)], check=True,
                   capture_output=True, cwd=ROOT / "python")
    generated = (tmp_path / "llama_mtp" / "_core.pyi").read_text()
    committed = (PACKAGE / "_core.pyi").read_text()
    assert generated == committed, "python/llama_mtp/_core.pyi is stale: regenerate it"


def test_mypy_strict() -> None:
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", str(PACKAGE)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_benches() -> None:
    """The benchmark scripts are typed too (they import each other, so mypy runs in benches/)."""
    pytest.importorskip("mypy")
    scripts = sorted(p.name for p in (ROOT / "benches").glob("*.py"))
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", *scripts],
                            capture_output=True, text=True, cwd=ROOT / "benches")
    assert result.returncode == 0, result.stdout + result.stderr
