"""Build facts, logging bridge and the public package surface."""

from __future__ import annotations

import logging
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


def test_quiet_by_default(tmp_path: Path) -> None:
    """With the default level, loading prints nothing from llama.cpp to stdout/stderr."""
    code = (
        "import llama_mtp, tests.test_gguf_errors as t, pathlib, sys\n"
        f"p = t.write_small_gguf(pathlib.Path({str(tmp_path)!r}) / 'x.gguf')\n"
        "llama_mtp.inspect_gguf = None\n"
        "from llama_mtp.gguf_info import inspect_gguf\n"
        "inspect_gguf(p)\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip() == "done"
    assert out.stderr.strip() == ""


def test_set_log_level_rejects_unknown_name() -> None:
    with pytest.raises(ValueError):
        llama_mtp.set_log_level("LOUD")


def test_public_names_have_docstrings() -> None:
    for name in llama_mtp.__all__:
        obj = getattr(llama_mtp, name)
        if callable(obj) or isinstance(obj, type):
            assert obj.__doc__, f"llama_mtp.{name} has no docstring"
