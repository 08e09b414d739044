"""Make the DLLs that a Windows wheel ships next to ``_core`` usable; a no-op elsewhere.

A portable build (every wheel) puts ``llama.dll``, ``ggml.dll``, ``ggml-base.dll``,
``llama-common.dll`` and the run-time-loaded backends (``ggml-cpu-<level>.dll``,
``ggml-cuda.dll``) next to ``_core.pyd``. On Linux they find each other through their
``$ORIGIN`` rpath and there is nothing to do. On Windows two loaders meet:

* Python loads ``_core.pyd`` with ``LOAD_LIBRARY_SEARCH_DEFAULT_DIRS |
  LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR``: the DLLs it links (``llama.dll``, ...) are found next to
  it, and in directories given to :func:`os.add_dll_directory`.
* ggml then loads each backend with a plain ``LoadLibraryW(<full path>)``. Windows resolves
  *that* DLL's imports with the standard search order -- python.exe's directory, System32, the
  current directory, ``PATH`` -- not the backend's own directory and not the
  ``os.add_dll_directory`` list. A dependency is found whatever the search order when a module
  of the same name is already loaded in the process.

So this module, run at ``import llama_mtp`` before ``_core``:

1. adds the package directory with :func:`os.add_dll_directory` (for ``_core``'s imports and
   for ctypes loads by name), and
2. loads, by full path, the MSVC runtime DLLs that the wheel ships next to ``_core``
   (CMakeLists.txt installs the C++ library ``msvcp140*.dll`` and the OpenMP runtime
   ``vcomp140.dll``; Python itself ships only ``vcruntime140*.dll``) -- unless a module of that
   name is already loaded, which is then used as it would be anyway. Once loaded, the
   backends' imports of ``msvcp140.dll`` / ``vcomp140.dll`` resolve to them; a machine without
   the Visual C++ Redistributable would otherwise load ``_core`` but find no CPU backend (ggml
   skips a backend that fails to load).

The CUDA runtime DLLs (``cudart64_13.dll``, ``cublas*64_13.dll``) are preloaded the same way by
:mod:`llama_mtp._cuda_runtime`, from the ``nvidia-*`` pip packages.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parent

RUNTIME_DLLS = (
    "msvcp140.dll",
    "msvcp140_1.dll",
    "msvcp140_2.dll",
    "msvcp140_atomic_wait.dll",
    "msvcp140_codecvt_ids.dll",
    "vcomp140.dll",
)
"""The MSVC runtime DLLs a wheel may ship next to ``_core``, in load order: the C++ standard
library first (the ``msvcp140_*`` DLLs import it), then the OpenMP runtime."""

LOADED: dict[str, str] = {}
"""DLL name -> the path it was loaded from (only those this module loaded)."""
_dll_directories: list[Any] = []  # keep the os.add_dll_directory handles alive
_handles: list[Any] = []  # keep the loaded DLLs referenced


def is_windows() -> bool:
    """Whether the Windows DLL rules apply (a function so tests can take the Windows path)."""
    return sys.platform == "win32"


def module_loaded(name: str) -> bool:
    """Whether a DLL of this file name is already loaded in the process (Windows)."""
    kernel32: Any = getattr(ctypes, "windll").kernel32
    return bool(kernel32.GetModuleHandleW(name))


def load(path: str) -> Any:
    """Load a DLL by full path (Windows; ctypes' default search flags for its imports)."""
    return ctypes.CDLL(path)


def add_dll_directory(path: str) -> Any:
    """:func:`os.add_dll_directory` (Windows only)."""
    adder: Callable[[str], Any] = getattr(os, "add_dll_directory")
    return adder(path)


def prepare(package_dir: Path = _PACKAGE_DIR) -> dict[str, str]:
    """Run the steps of the module docstring; return what was loaded. No-op off Windows.

    A DLL that fails to load raises :class:`ImportError` naming it and the fix (a broken or
    foreign file next to ``_core`` must not end in a missing CPU backend later).
    """
    if not is_windows():
        return {}
    if not _dll_directories:
        _dll_directories.append(add_dll_directory(str(package_dir)))
    for name in RUNTIME_DLLS:
        path = package_dir / name
        if name in LOADED or not path.is_file() or module_loaded(name):
            continue
        try:
            _handles.append(load(str(path)))
        except OSError as exc:
            from ._extras import distribution_name

            raise ImportError(
                f"llama-mtp could not load {path} ({exc}). Reinstall the wheel "
                f"(pip install --force-reinstall {distribution_name()}), or install the "
                f"Microsoft Visual C++ Redistributable (x64) and remove that file."
            ) from exc
        LOADED[name] = str(path)
    return dict(LOADED)


prepare()
