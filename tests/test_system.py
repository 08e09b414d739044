"""Build facts, logging bridge and the public package surface."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

import llama_mtp
from llama_mtp import Model, ModelLoadError

ROOT = Path(__file__).resolve().parents[1]


def test_system_info() -> None:
    info = llama_mtp.system_info()
    pin = (ROOT / "third_party" / "llama_cpp.pin").read_text()
    assert f"commit = {info.llama_commit}" in pin
    assert "CPU" in info.backends
    assert any(d.type == "cpu" for d in info.devices)
    assert info.cpu_features  # llama_print_system_info(), e.g. "CPU : SSE3 = 1 | ..."
    # the RPC backend is in every build; llama.cpp then counts it as GPU offload
    assert info.rpc and "RPC" in info.backends and info.gpu_offload
    assert re.fullmatch(r"\d+\.\d+\.\d+", info.rpc_protocol)
    if info.cuda_compiled:
        assert "CUDA" in info.backends or not info.gpu_offload


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF symbol binding")
def test_module_keeps_llama_cpp_symbols_to_itself() -> None:
    """The static llama.cpp inside the module is bound internally (no PLT hop per ggml call) and
    exports nothing another llama.cpp copy in the process could collide with."""
    import ctypes

    from llama_mtp import _core

    if llama_mtp.system_info().backend_dl:
        pytest.skip("portable build: llama.cpp lives in its own shared libraries")
    lib = ctypes.CDLL(_core.__file__)
    assert hasattr(lib, "PyInit__core")
    for name in ("llama_decode", "ggml_barrier", "gguf_init_from_file", "ggml_graph_compute"):
        assert not hasattr(lib, name), f"{name} is exported from {_core.__file__}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF symbols, glibc free()")
def test_cpu_backend_array_new_is_cache_line_aligned() -> None:
    """ggml's CPU work buffer comes from `new uint8_t[]`; the flash-attention kernel's tiles in
    it cost ~25 % more off a cache line. The library holding the CPU backend (the module, or in
    a portable build each ggml-cpu variant next to it) must carry our array new (64-byte
    aligned, released by free()) and bind its own calls to it."""
    import ctypes
    import shutil

    from llama_mtp import _core

    module = Path(_core.__file__)
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    array_new = ctypes.CDLL(str(module))._Znam  # operator new[](size_t)
    array_new.restype, array_new.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    for size in (0, 1, 24, 1000, 4096 + 8, 5 << 20):
        p = array_new(size)
        assert p and p % 64 == 0, f"new[{size}] -> {p:#x}"
        libc.free(p)
    libs = [module]
    if llama_mtp.system_info().backend_dl:
        # variants for other CPUs are only inspected, never called into (ggml loads each to
        # ask for its score, so loading them is safe)
        variants = sorted(p for p in module.parent.iterdir() if p.name.startswith("libggml-cpu"))
        assert variants, f"no ggml-cpu library next to {module}"
        libs += variants
    readelf = shutil.which("readelf")
    for path in libs:
        assert hasattr(ctypes.CDLL(str(path)), "_Znam"), f"{path.name} lacks our operator new[]"
        if readelf:  # no relocation left for it: bound at link time, not to libstdc++'s
            relocs = subprocess.run([readelf, "-rW", str(path)], capture_output=True, text=True,
                                    check=True).stdout
            assert "_Znam" not in relocs, f"{path.name} binds operator new[] at run time"


_HEAP_PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p

def on_heap(size):
    # a glibc block below the mmap threshold comes from the [heap] mapping, above it from mmap;
    # not freed: freeing a mapped block would itself raise the threshold
    addr = libc.malloc(size)
    maps = open("/proc/self/maps").read().splitlines()
    heap = [tuple(int(x, 16) for x in l.split()[0].split("-")) for l in maps if l.endswith("[heap]")]
    return any(lo <= addr < hi for lo, hi in heap)

def refaults(size):
    # page faults when a block of this size is freed and taken again: the heap's top is trimmed
    # back to the kernel (and faulted in again) when glibc's trim threshold is below the block
    import resource
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(ctypes.c_void_p(block))
    block = libc.malloc(size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ctypes.memset(block, 1, size)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    libc.free(ctypes.c_void_p(block))
    return faults

before = on_heap(4 << 20)
import llama_mtp
llama_mtp.system.ensure_backend()
print(before, on_heap(4 << 20), refaults(4 << 20))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="per-thread malloc arenas and the one-arena limit are glibc's (Linux)")
def test_backend_init_moves_work_buffers_off_fresh_mappings() -> None:
    """ggml's CPU work buffer must come from the heap, as in llama-server: on a fresh mapping its
    scratch tiles cost ~4 % on long prompts. A freed block must not go back to the kernel at once
    (the trim threshold rises with it). LLAMA_MTP_KEEP_MALLOC=1 opts out."""
    import os
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mmap threshold")

    def probe(**env: str) -> list[str]:
        own = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # would switch ours off
        full = {k: v for k, v in os.environ.items() if k not in own} | env
        return subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True,
                              check=True, env=full).stdout.split()

    out = probe()
    if out[0] == "True":
        pytest.skip("this interpreter's start-up already raised the threshold")
    assert out[:2] == ["False", "True"]
    assert int(out[2]) < 64, f"a freed 4 MiB block was trimmed and faulted in again: {out[2]} faults"
    # opted out: glibc's defaults stay (its fault count then depends on glibc's dynamic rule)
    assert probe(LLAMA_MTP_KEEP_MALLOC="1")[:2] == ["False", "False"]


_ARENA_PROBE = r"""
import ctypes, threading
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p

def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

import llama_mtp
llama_mtp.system.ensure_backend()

def use_and_free():
    # a block below the 32 MiB mmap threshold, written and freed by a thread of its own (as a
    # request's sampler arrays or a context's buffers are)
    size = 24 << 20
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(ctypes.c_void_p(block))

before = anon_kib()
worker = threading.Thread(target=use_and_free)
worker.start()
worker.join()
libc.malloc_trim(0)  # what llama-mtp does after freeing a context or a model
print(anon_kib() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_memory_freed_by_any_thread_goes_back_to_the_kernel() -> None:
    """A thread's own malloc arena never returns its top chunk: malloc_trim() cannot, and free()
    does not below the 64 MiB trim threshold (the largest an arena's heap can be). With one arena
    (set when llama_mtp is imported) a block freed by a worker thread is given back by the trim that follows
    a freed context or model; with glibc's arenas per thread, soak runs that replace models under
    8 threads grew ~+15 %. A MALLOC_ARENA_MAX of the user's own is kept."""
    import os
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc (e.g. musl): no per-thread arenas, and llama-mtp sets no arena limit there")

    def kept_kib(**env: str) -> int:
        own = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES",
               "LLAMA_MTP_KEEP_MALLOC")
        full = {k: v for k, v in os.environ.items() if k not in own} | env
        out = subprocess.run([sys.executable, "-c", _ARENA_PROBE], capture_output=True, text=True,
                             check=True, env=full).stdout
        return int(out.split()[-1])

    assert kept_kib() < 8 << 10, "24 MiB freed by a worker thread stayed resident after malloc_trim"
    # the user's own arena limit is kept: the thread's arena then holds on to the block (this is
    # what the one arena prevents; it also shows the probe can see it)
    assert kept_kib(MALLOC_ARENA_MAX="8") > 16 << 10


def test_llama_log_reaches_python_logging(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "alien.gguf"
    from tests.test_gguf_errors import write_small_gguf

    write_small_gguf(bad, arch="no-such-arch")
    llama_mtp.set_log_level("INFO")
    try:
        with caplog.at_level(logging.INFO, logger="llama_mtp"):
            with pytest.raises(ModelLoadError):
                Model(bad)
        native = [r for r in caplog.records if r.name == "llama_mtp.llama_cpp"]
        assert native, "llama.cpp's log did not reach the llama_mtp logger"
        assert any("no-such-arch" in r.getMessage() for r in native)
    finally:
        llama_mtp.set_log_level(logging.WARNING)
    assert llama_mtp.get_log_level() == logging.WARNING


_QUIET_PROBE = """
import sys
import llama_mtp
from llama_mtp import Model, SamplingParams, Speculator
if len(sys.argv) > 2:  # the control: llama.cpp's log asked for, printed to stderr
    import logging
    logging.basicConfig(level=logging.INFO)
    llama_mtp.set_log_level("INFO")
with Model(sys.argv[1], n_ctx=256, n_threads=1) as model:
    out = model.generate("Hello", SamplingParams.greedy(max_tokens=4), speculator=Speculator.mtp(2))
    reply = model.chat([{"role": "user", "content": "Hi"}], SamplingParams.greedy(max_tokens=4))
print(len(out.tokens), reply.finish_reason)
"""


def test_quiet_by_default(tiny_model_path: Path) -> None:
    """With the default level, loading a model, generating with MTP and chatting print nothing
    from llama.cpp to stdout/stderr (its model loader, context and speculator setup are chatty)."""
    def probe(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _QUIET_PROBE, str(tiny_model_path), *extra],
                              capture_output=True, text=True, cwd=ROOT, check=True)

    out = probe()
    assert out.stdout == "4 length\n"
    assert out.stderr == ""
    # the control: these calls do log (so silence above is the bridge's doing, not an idle run)
    loud = probe("--print-log")
    assert loud.stdout == "4 length\n" and "llama_model_load" in loud.stderr


def test_set_log_level_rejects_unknown_name() -> None:
    with pytest.raises(ValueError):
        llama_mtp.set_log_level("LOUD")


def test_public_names_have_docstrings() -> None:
    for name in llama_mtp.__all__:
        obj = getattr(llama_mtp, name)
        if callable(obj) or isinstance(obj, type):
            assert obj.__doc__, f"llama_mtp.{name} has no docstring"



def test_one_version() -> None:
    """The version is written once, in __init__.py; the build reads the package metadata's
    version from it (scikit-build-core's regex provider), so the two always agree."""
    from importlib.metadata import packages_distributions, version

    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("\n[project]\n")[1].split("\n[")[0]
    assert re.search(r"(?m)^version\s*=", project) is None and re.search(r'(?m)^dynamic = \["version"\]', project)
    init = (ROOT / "python" / "llama_mtp" / "__init__.py").read_text(encoding="utf-8")
    assert re.findall(r'(?m)^__version__ = "([^"]+)"$', init) == [llama_mtp.__version__]
    dist = packages_distributions().get("llama_mtp", ["llama-mtp"])[0]  # or llama-mtp-cu13
    assert version(dist) == llama_mtp.__version__
