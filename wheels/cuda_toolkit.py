#!/usr/bin/env python3
"""Assemble a CUDA toolkit root that CMake can build ggml's CUDA backend against.

Some machines (this project's development machines among them) carry an ``nvcc`` installed
from PyPI's ``nvidia-*`` packages: compiler, headers and ``cudart``, but no cuBLAS and no
``libcuda.so`` stub. ggml-cuda needs cuBLAS at build time. This script

1. installs ``nvidia-cublas==<version>`` (matching nvcc's CUDA release) into a cache
   directory with ``pip install --target`` -- never into the toolkit itself, and
2. builds, next to it, a toolkit root made only of symlinks: ``bin/`` and ``nvvm/`` from the
   existing toolkit, ``include/`` = the toolkit headers + the cuBLAS headers, ``lib64/`` = the
   toolkit libraries (``cudart`` ...) + ``libcublas.so`` / ``libcublasLt.so``.

nvcc derives its installation root from the directory it is invoked from (``nvcc.profile``:
``TOP = $(_HERE_)/..``), so calling ``<root>/bin/nvcc`` makes CMake's compiler detection and
``FindCUDAToolkit`` see ``<root>`` -- including cuBLAS -- as one toolkit.

Usage::

    python wheels/cuda_toolkit.py                 # prints the toolkit root
    python wheels/cuda_toolkit.py --cmake-args    # prints -C options for `pip wheel`
    python wheels/cuda_toolkit.py --cuda-root /opt/cuda --cublas-version 13.0.2.14

Linux only (Windows and manylinux CI get a real toolkit from NVIDIA's installers; see
wheels/README.md). Nothing outside ``--cache`` is ever written.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# cuBLAS release shipped with a CUDA toolkit release (major.minor -> PyPI nvidia-cublas). Only
# the pairing used and tested here is listed; pass --cublas-version for other releases.
CUBLAS_FOR_CUDA = {
    "13.0": "13.0.2.14",  # CUDA 13.0 update 2
}
DEFAULT_CACHE = Path(
    os.environ.get("LLAMA_MTP_CUDA_CACHE", Path.home() / ".cache" / "llama-mtp" / "cuda")
)


def nvcc_version(nvcc: Path) -> str:
    """Return ``major.minor`` of the CUDA release that ``nvcc --version`` reports."""
    out = subprocess.run([str(nvcc), "--version"], check=True, capture_output=True, text=True)
    m = re.search(r"release (\d+)\.(\d+)", out.stdout)
    if not m:
        raise SystemExit(f"cannot parse the CUDA release from `{nvcc} --version`:\n{out.stdout}")
    return f"{m.group(1)}.{m.group(2)}"


def install_cublas(version: str, target: Path) -> Path:
    """pip-install nvidia-cublas==version into ``target`` (once); return its ``nvidia/cuXX``."""
    stamp = target / f".installed-nvidia-cublas-{version}"
    if not stamp.exists():
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
             "--disable-pip-version-check", "--target", str(target),
             f"nvidia-cublas=={version}"],
            check=True,
        )
        stamp.touch()
    major = version.split(".")[0]
    for candidate in (target / "nvidia" / f"cu{major}", target / "nvidia" / "cublas"):
        if (candidate / "include" / "cublas_v2.h").exists():
            return candidate
    raise SystemExit(f"nvidia-cublas=={version} installed in {target}, but no cublas_v2.h found")


def _link_entries(src: Path, dst: Path) -> None:
    """Symlink every entry of ``src`` into the (real) directory ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        link = dst / entry.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(entry.resolve())


def assemble_root(cuda_root: Path, cublas: Path, root: Path) -> Path:
    """Create the symlink toolkit root ``root`` (rebuilt from scratch every time)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _link_entries(cuda_root / "bin", root / "bin")
    for name in ("nvvm", "share", "extras"):
        if (cuda_root / name).exists():
            (root / name).symlink_to((cuda_root / name).resolve())
    _link_entries(cuda_root / "include", root / "include")
    _link_entries(cublas / "include", root / "include")
    libdir = cuda_root / "lib64" if (cuda_root / "lib64").exists() else cuda_root / "lib"
    _link_entries(libdir, root / "lib64")
    _link_entries(cublas / "lib", root / "lib64")
    # The wheels carry only versioned sonames (libcublas.so.13); the linker wants libcublas.so.
    for so in sorted((root / "lib64").glob("lib*.so.*")):
        plain = root / "lib64" / (so.name.split(".so.")[0] + ".so")
        if not plain.exists() and not plain.is_symlink():
            plain.symlink_to(so.name)
    (root / "lib").symlink_to("lib64")
    target = root / "targets" / "x86_64-linux"
    target.mkdir(parents=True)
    (target / "include").symlink_to("../../include")
    (target / "lib").symlink_to("../../lib64")
    return root


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the root (or CMake options) on stdout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuda-root", type=Path,
                    default=Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")),
                    help="existing toolkit with bin/nvcc (default: $CUDA_HOME or /usr/local/cuda)")
    ap.add_argument("--cublas-version", help="nvidia-cublas version (default: matches nvcc)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help=f"where cuBLAS and the root go (default: {DEFAULT_CACHE})")
    ap.add_argument("--cmake-args", action="store_true",
                    help="print -C cmake.define.* options for pip instead of the root")
    args = ap.parse_args(argv)

    nvcc = args.cuda_root / "bin" / "nvcc"
    if not nvcc.exists():
        raise SystemExit(f"no nvcc at {nvcc}; pass --cuda-root")
    release = nvcc_version(nvcc)
    version = args.cublas_version or CUBLAS_FOR_CUDA.get(release)
    if version is None:
        raise SystemExit(f"no nvidia-cublas pinned for CUDA {release}; pass --cublas-version")
    if version.split(".")[0] != release.split(".")[0]:
        raise SystemExit(f"nvidia-cublas {version} does not match nvcc's CUDA {release}")
    cublas = install_cublas(version, args.cache / f"cublas-{version}")
    root = assemble_root(args.cuda_root, cublas, args.cache / f"toolkit-{release}-cublas-{version}")
    print(f"toolkit root for CUDA {release} + cuBLAS {version}: {root}", file=sys.stderr)
    if args.cmake_args:
        print(f"-C cmake.define.CUDAToolkit_ROOT={root} "
              f"-C cmake.define.CMAKE_CUDA_COMPILER={root / 'bin' / 'nvcc'}")
    else:
        print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
