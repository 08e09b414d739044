"""Load a CUDA build's runtime (cudart, cuBLAS) from the ``nvidia-*`` pip packages.

A CUDA wheel (``llama-mtp-cu13``) does not bundle the CUDA runtime: it depends on PyPI's
``nvidia-cuda-runtime`` and ``nvidia-cublas`` and this module loads their libraries when
``llama_mtp`` is imported, before ``_core`` (and, in a portable build, before ggml loads
``libggml-cuda``). The dynamic linker then resolves ``libcudart.so.13`` / ``libcublas.so.13``
to these already-loaded copies -- no ``LD_LIBRARY_PATH``, no system CUDA toolkit needed.

CPU builds carry no ``_cuda_build.json`` and this module does nothing. Only the NVIDIA driver
(``libcuda.so.1`` / ``nvcuda.dll``) must come from the system.

Set ``LLAMA_MTP_SKIP_CUDA_RUNTIME=1`` to skip the loading (e.g. to use a system toolkit
that the dynamic linker already finds).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parent
BUILD_INFO_FILE = "_cuda_build.json"
"""Written next to ``_core`` by CMake in CUDA builds only."""
SKIP_ENV = "LLAMA_MTP_SKIP_CUDA_RUNTIME"

LOADED: dict[str, str] = {}
"""Library file name -> the path it was loaded from (or the bare name if the system had it)."""
_dll_directories: list[Any] = []  # keep os.add_dll_directory handles alive (Windows)
_handles: list[ctypes.CDLL] = []  # keep the loaded libraries referenced


class CudaRuntimeError(ImportError):
    """The CUDA runtime that this CUDA build of llama-mtp needs cannot be loaded."""


def _is_windows() -> bool:
    # A function, so that tests can take the Windows path on any machine. (This module is
    # also loaded standalone by wheels/variant.py: it imports nothing from the package.)
    return sys.platform == "win32"


@dataclass(frozen=True)
class CudaBuild:
    """What ``_cuda_build.json`` says about the CUDA build."""

    cuda_version: str
    cuda_major: int
    archs: str = ""


@dataclass(frozen=True)
class RuntimeLibrary:
    """One library of the CUDA runtime and the pip distribution that ships it."""

    distribution: str
    linux: str
    windows: str

    @property
    def filename(self) -> str:
        """The file name on this platform."""
        return self.windows if _is_windows() else self.linux


def read_build_info(package_dir: Path = _PACKAGE_DIR) -> CudaBuild | None:
    """Return the CUDA build description, or ``None`` for a CPU build."""
    path = package_dir / BUILD_INFO_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    return CudaBuild(
        cuda_version=str(raw["cuda_version"]),
        cuda_major=int(raw["cuda_major"]),
        archs=str(raw.get("archs", "")),
    )


def runtime_libraries(cuda_major: int) -> list[RuntimeLibrary]:
    """The libraries to load for CUDA ``cuda_major``, in dependency order.

    From CUDA 13 on NVIDIA's packages drop the ``-cuXX`` suffix (``nvidia-cublas``); CUDA 12's
    are ``nvidia-cublas-cu12`` and friends.
    """
    suffix = "" if cuda_major >= 13 else f"-cu{cuda_major}"
    m = cuda_major
    return [
        RuntimeLibrary(f"nvidia-cuda-runtime{suffix}", f"libcudart.so.{m}", f"cudart64_{m}.dll"),
        RuntimeLibrary(f"nvidia-cublas{suffix}", f"libcublasLt.so.{m}", f"cublasLt64_{m}.dll"),
        RuntimeLibrary(f"nvidia-cublas{suffix}", f"libcublas.so.{m}", f"cublas64_{m}.dll"),
    ]


def requirements(cuda_major: int) -> list[str]:
    """The pip requirements that provide the runtime of CUDA ``cuda_major``."""
    names = dict.fromkeys(lib.distribution for lib in runtime_libraries(cuda_major))
    return [f"{name}>={cuda_major}.0,<{cuda_major + 1}" for name in names]


def find_in_distribution(distribution: str, filename: str) -> Path | None:
    """Path of ``filename`` inside the installed pip ``distribution``, or ``None``.

    Uses the distribution's RECORD (works wherever pip put it: site-packages, user site,
    ``--target``); falls back to the ``nvidia`` namespace package's directories.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name == filename:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for path in sorted(Path(root).glob(f"*/*/{filename}")) + sorted(
            Path(root).glob(f"*/bin/*/{filename}")
        ):
            if path.is_file():
                return path
    return None


def _load(path_or_name: str) -> ctypes.CDLL:
    if _is_windows():
        # ggml-cuda.dll's imports of these names resolve to these loaded modules.
        return ctypes.CDLL(path_or_name)
    return ctypes.CDLL(path_or_name, mode=ctypes.RTLD_GLOBAL)


def ensure_loaded(package_dir: Path = _PACKAGE_DIR) -> dict[str, str]:
    """Load the CUDA runtime for a CUDA build (no-op for a CPU build); return what was loaded.

    Raises :class:`CudaRuntimeError` (an :class:`ImportError`) naming the pip packages to
    install when a library is neither in its pip package nor loadable from the system.
    """
    build = read_build_info(package_dir)
    if build is None or os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return {}
    missing: dict[str, list[str]] = {}
    for lib in runtime_libraries(build.cuda_major):
        if lib.filename in LOADED:
            continue
        path = find_in_distribution(lib.distribution, lib.filename)
        if path is not None:
            if _is_windows():
                _dll_directories.append(getattr(os, "add_dll_directory")(str(path.parent)))
            _handles.append(_load(str(path)))
            LOADED[lib.filename] = str(path)
            continue
        try:  # not from pip: a system toolkit the dynamic linker finds (conda, CUDA_PATH, ...)
            _handles.append(_load(lib.filename))
            LOADED[lib.filename] = lib.filename
        except OSError as exc:
            missing.setdefault(lib.distribution, []).append(f"{lib.filename} ({exc})")
    if missing:
        reqs = [r for r in requirements(build.cuda_major) if r.split(">=")[0] in missing]
        details = "; ".join(f"{dist}: {', '.join(libs)}" for dist, libs in missing.items())
        raise CudaRuntimeError(
            f"llama-mtp was built with CUDA {build.cuda_version} and needs the CUDA "
            f"{build.cuda_major} runtime from pip, but the package(s) "
            f"{', '.join(missing)} are not installed (or lack the library). Install them with: "
            f"pip install {' '.join(repr(r) for r in reqs)}  "
            f"(they are dependencies of the CUDA wheel; an install with --no-deps skips them). "
            f"Set {SKIP_ENV}=1 to skip this check. Missing: {details}"
        )
    return dict(LOADED)


ensure_loaded()
