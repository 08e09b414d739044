#!/usr/bin/env python3
"""Smoke test for an installed llama-mtp wheel (cibuildwheel's test-command; also by hand).

Checks, in a clean environment, that ``import llama_mtp`` works without LD_LIBRARY_PATH /
PATH tricks, that the build is what its distribution name promises, and prints
``system_info()``:

* every wheel: portable (``backend_dl``), ``ggml-cpu-<level>`` libraries shipped, a CPU
  backend registered; on Windows the MSVC C++ and OpenMP runtime DLLs shipped and loaded;
* ``llama-mtp``: no CUDA compiled in, no NVIDIA runtime loaded;
* ``llama-mtp-cuNN``: CUDA compiled in, ``libggml-cuda`` shipped next to ``_core``, and the
  CUDA runtime loaded from the nvidia-* pip packages (not from a system toolkit).

A machine without an NVIDIA GPU/driver is fine (ggml falls back to the CPU). Set
``LLAMA_MTP_SMOKE_EXPECT_GPU=1`` on a GPU runner to also require a CUDA device.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import sys
from pathlib import Path


def main() -> int:
    """Run the checks; exit status 0 when they pass."""
    import llama_mtp
    from llama_mtp import _cuda_runtime, _native_libs

    info = llama_mtp.system_info()
    package_dir = Path(llama_mtp.__file__).resolve().parent
    dists = importlib.metadata.packages_distributions().get("llama_mtp", [])
    print(json.dumps({"distributions": dists, "package_dir": str(package_dir),
                      "cuda_runtime": _cuda_runtime.LOADED,
                      "windows_runtime": _native_libs.LOADED,
                      "system_info": dataclasses.asdict(info)}, indent=2))

    failures: list[str] = []
    if not info.backend_dl:
        failures.append("not a portable build (backend_dl is False)")
    if not any(b.upper() == "CPU" for b in info.backends):
        failures.append(f"no CPU backend registered: {info.backends}")
    if not list(package_dir.glob("*ggml-cpu-*")):
        failures.append(f"no ggml-cpu-<level> backend libraries in {package_dir}")
    if _native_libs.is_windows():
        # The wheel ships the MSVC C++ and OpenMP runtimes next to _core (CMakeLists.txt); each
        # is loaded now, by _native_libs or (a module of that name) before it.
        for name in ("msvcp140.dll", "vcomp140.dll"):
            if not (package_dir / name).is_file():
                failures.append(f"{name} not shipped in {package_dir}")
            elif not _native_libs.module_loaded(name):
                failures.append(f"{name} not loaded")
    cuda_dists = [d for d in dists if d.lower().replace("_", "-").startswith("llama-mtp-cu")]
    if cuda_dists:
        if not info.cuda_compiled:
            failures.append(f"{cuda_dists[0]} but CUDA was not compiled in")
        if not list(package_dir.glob("*ggml-cuda*")):
            failures.append(f"no ggml-cuda library in {package_dir}")
        build = _cuda_runtime.read_build_info(package_dir)
        expected = {lib.filename for lib in _cuda_runtime.runtime_libraries(build.cuda_major)} \
            if build else set()
        if not expected or set(_cuda_runtime.LOADED) != expected:
            failures.append(f"CUDA runtime not loaded: {_cuda_runtime.LOADED} != {expected}")
        elif not all(os.path.isabs(p) and "nvidia" in p for p in _cuda_runtime.LOADED.values()):
            failures.append(f"CUDA runtime not from the pip packages: {_cuda_runtime.LOADED}")
        if os.environ.get("LLAMA_MTP_SMOKE_EXPECT_GPU") == "1" and not any(
            d.type == "gpu" for d in info.devices
        ):
            failures.append(f"no GPU device: {info.devices}")
    else:
        if info.cuda_compiled:
            failures.append("CPU package llama-mtp has CUDA compiled in")
        if _cuda_runtime.LOADED:
            failures.append(f"CPU package loaded a CUDA runtime: {_cuda_runtime.LOADED}")
    for failure in failures:
        print("SMOKE FAIL:", failure, file=sys.stderr)
    print("smoke test:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
