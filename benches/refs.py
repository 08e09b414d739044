"""Builds the reference contenders on demand, into ``benches/.cache`` (git-ignored).

* llama.cpp's own tools (``llama-cli``, ``llama-completion``, ``llama-speculative-simple``,
  ``llama-server``, ``llama-bench``, and ``ggml-rpc-server``, llama.cpp's rpc-server, for the RPC
  interoperability test) from the SAME vendored tree and the SAME CMake project as the
  extension (``-DLLAMA_MTP_REFERENCE_TOOLS=ON`` only defines the tools as extra targets), so
  ggml/llama are compiled with the extension's flags (GGML_NATIVE, Release, OpenMP, static).
  :func:`compare_flags` checks that against the extension's own ``compile_commands.json``.
* llama-cpp-python (PyPI sdist, its own llama.cpp copy) in a separate venv, built from source
  with ``CMAKE_ARGS=-DGGML_NATIVE=ON``; the build time is recorded.

    python benches/refs.py tools      # or: llama-cpp-python, all, rpc-server
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LLAMA_MTP_BENCH_CACHE", ROOT / "benches" / ".cache"))
TOOLS_DIR = CACHE / "tools"
RPC_SERVER = "ggml-rpc-server"
"""llama.cpp's rpc-server (tools/rpc; this tree names the target ggml-rpc-server)."""
TOOL_TARGETS = ("llama-cli", "llama-completion", "llama-speculative-simple", "llama-server",
                "llama-bench", RPC_SERVER)
LCP_VERSION = "0.3.36"
LCP_VENV = CACHE / f"llama-cpp-python-{LCP_VERSION}"
JOBS = int(os.environ.get("LLAMA_MTP_BENCH_JOBS", "2"))


def _nice() -> list[str]:
    return ["nice", "-n", "10"] if sys.platform != "win32" else []


def _env() -> dict[str, str]:
    """The environment with this interpreter's scripts directory first on PATH: the venv's
    cmake/ninja, the same ones that built the extension (a different CMake version orders the
    compile flags differently and rebuilds everything)."""
    env = dict(os.environ)
    scripts = sysconfig.get_path("scripts")
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    return env


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` (output to ``log``); seconds taken. Raises with the log's tail on failure."""
    env = env or _env()
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    dt = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"{shlex.join(cmd)} failed ({rc}); log {log}:\n{tail}")
    return dt


def extension_build_dir() -> Path | None:
    """The extension's scikit-build directory (``build/<wheel tag>``), if there is one."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    cands = sorted((ROOT / "build").glob(f"{tag}-*"), key=lambda p: p.stat().st_mtime,
                   reverse=True)
    for c in cands:
        if (c / "CMakeCache.txt").exists():
            return c
    return None


def _cache_value(cache: Path, key: str) -> str | None:
    for line in cache.read_text(errors="replace").splitlines():
        if line.startswith(key + ":"):
            return line.split("=", 1)[1]
    return None


def tool_path(name: str) -> Path:
    """Path of a built tool (``benches/.cache/tools/bin/NAME``)."""
    return TOOLS_DIR / "bin" / name


def build_tools(targets: tuple[str, ...] = TOOL_TARGETS, *, force: bool = False) -> dict[str, object]:
    """Configure (once) and build llama.cpp's tools from our CMake project; returns a record."""
    if not force and all(tool_path(t).exists() for t in targets):
        return {"built": False, "dir": str(TOOLS_DIR)}
    import pybind11
    # LLAMA_MTP_RPC_FAILSAFE=OFF: the tools' ggml-rpc is upstream's, unchanged (CMakeLists.txt).
    defines = {"CMAKE_BUILD_TYPE": "Release", "LLAMA_MTP_REFERENCE_TOOLS": "ON",
               "Python_EXECUTABLE": sys.executable, "pybind11_DIR": pybind11.get_cmake_dir(),
               "CMAKE_EXPORT_COMPILE_COMMANDS": "ON", "LLAMA_MTP_RPC_FAILSAFE": "OFF"}
    ext = extension_build_dir()
    if ext is not None:  # mirror the switches the extension was configured with
        for key in ("GGML_NATIVE", "LLAMA_MTP_PORTABLE", "LLAMA_MTP_CUDA", "CMAKE_BUILD_TYPE"):
            v = _cache_value(ext / "CMakeCache.txt", key)
            if v:
                defines[key] = v
    log = CACHE / "logs" / "tools-build.log"
    cfg = ["cmake", "-S", str(ROOT), "-B", str(TOOLS_DIR), "-G", "Ninja"]
    cfg += [f"-D{k}={v}" for k, v in defines.items()]
    t_cfg = _run(_nice() + cfg, log)
    t_build = _run(_nice() + ["cmake", "--build", str(TOOLS_DIR), "-j", str(JOBS), "--target",
                              *targets], log)
    return {"built": True, "dir": str(TOOLS_DIR), "configure_s": round(t_cfg, 1),
            "build_s": round(t_build, 1), "defines": defines}


def compare_flags() -> dict[str, object]:
    """Compile flags of ggml's CPU backend in the extension's build vs the tools' build."""
    def flags(build: Path) -> str | None:
        f = build / "compile_commands.json"
        if not f.exists():
            return None
        for e in json.loads(f.read_text()):
            if e["file"].endswith("ggml-cpu/ggml-cpu.c"):
                words = shlex.split(e["command"])
                # drop the compiler (a ccache wrapper or not), the output and the source
                keep, skip = [], False
                for w in words[1:]:
                    if skip:
                        skip = False
                        continue
                    if w in ("-o", "-c", "-MF", "-MT"):
                        skip = True
                        continue
                    if w.endswith("gcc") or w.endswith("cc") or w == "-MD":
                        continue
                    keep.append(w)
                return " ".join(keep)
        return None
    ext = extension_build_dir()
    a = flags(ext) if ext else None
    b = flags(TOOLS_DIR)
    # the same flags in another order (CMake versions differ in where they put -std=) count
    same = a is not None and b is not None and sorted(a.split()) == sorted(b.split())
    return {"extension": a, "tools": b, "identical": same}


def lcp_python() -> Path:
    return LCP_VENV / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def build_llama_cpp_python(*, force: bool = False) -> dict[str, object]:
    """llama-cpp-python==0.3.36 from its sdist (its own llama.cpp copy) in a separate venv."""
    record_file = LCP_VENV / "build-record.json"
    if not force and record_file.exists() and lcp_python().exists():
        rec: dict[str, object] = json.loads(record_file.read_text())
        rec["built"] = False
        return rec
    log = CACHE / "logs" / "llama-cpp-python-build.log"
    _run([sys.executable, "-m", "venv", "--clear", str(LCP_VENV)], log)
    py = str(lcp_python())
    _run([py, "-m", "pip", "install", "-q", "--upgrade", "pip", "scikit-build-core", "cmake",
          "ninja"], log)
    env = _env()
    env.update(CMAKE_ARGS="-DGGML_NATIVE=ON", CMAKE_BUILD_PARALLEL_LEVEL=str(JOBS),
               # a cold build: its recorded time must not profit from our own ccache
               CCACHE_DISABLE="1")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    dt = _run(_nice() + [py, "-m", "pip", "install", "--no-cache-dir", "--no-binary",
                         "llama-cpp-python", f"llama-cpp-python=={LCP_VERSION}"], log, env=env)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rec = {"built": True, "version": LCP_VERSION, "build_s": round(dt, 1),
           "cmake_args": env["CMAKE_ARGS"], "jobs": JOBS, "nice": bool(_nice()),
           "loadavg_start": load0, "loadavg_end": load1,
           "note": "pip install --no-binary (sdist build, incl. dependency install); "
                   "wall time on a shared 2-core machine"}
    record_file.write_text(json.dumps(rec, indent=1))
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["tools", "llama-cpp-python", "all", "flags", "rpc-server"])
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    if a.what in ("tools", "all"):
        print(json.dumps(build_tools(force=a.force), indent=1), flush=True)
        print(json.dumps(compare_flags(), indent=1), flush=True)
    if a.what == "rpc-server":  # only ggml + the server: a few minutes, not the whole tool set
        print(json.dumps(build_tools((RPC_SERVER,), force=a.force), indent=1), flush=True)
    if a.what == "flags":
        print(json.dumps(compare_flags(), indent=1))
    if a.what in ("llama-cpp-python", "all"):
        print(json.dumps(build_llama_cpp_python(force=a.force), indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
