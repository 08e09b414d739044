"""Shared fixtures: synthetic models built once and cached across test sessions.

Built files live in ``$LLAMA_MTP_TEST_MODELS`` (default ``~/.cache/llama_mtp/test-models``),
named by a hash of the builder's source code and the build arguments, so a change to
``llama_mtp.synthetic`` rebuilds them and nothing stale is ever used.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.rpc_servers import RpcServer


def _builder_fingerprint() -> str:
    import llama_mtp.synthetic as synthetic
    h = hashlib.sha256()
    for f in sorted(Path(synthetic.__file__).parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def models_dir() -> Path:
    """Where the test models are cached."""
    env = os.environ.get("LLAMA_MTP_TEST_MODELS")
    base = Path(env) if env else Path.home() / ".cache" / "llama_mtp" / "test-models"
    base.mkdir(parents=True, exist_ok=True)
    return base


SyntheticFactory = Callable[..., Path]

SLOW_TIMEOUT = 900
"""Seconds a ``slow`` test may take (every other test: ``timeout`` in pyproject.toml)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow`` tests get a generous time limit unless they set their own."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


@pytest.fixture(scope="session")
def synthetic_model() -> SyntheticFactory:
    """``synthetic_model(preset="tiny", quant="Q8_0", mtp_agreement=0.8, **build_kwargs)``:
    the path of a cached synthetic model (built on first use). ``requantize_from="F16"`` makes
    the file with :func:`llama_mtp.quantize` from that cached source instead of writing it."""
    from llama_mtp import quantize
    from llama_mtp.synthetic import build

    fingerprint = _builder_fingerprint()
    # files of other builder versions are stale: remove them (names: <fingerprint>-...gguf)
    for old in models_dir().glob("*.gguf"):
        if len(old.name) > 17 and old.name[16] == "-" and not old.name.startswith(fingerprint):
            old.unlink(missing_ok=True)

    def make(preset: str = "tiny", quant: str = "Q8_0", mtp_agreement: float = 0.8,
             requantize_from: str | None = None, **kwargs: Any) -> Path:
        args: dict[str, Any] = dict(preset=preset, quant=quant, mtp_agreement=mtp_agreement,
                                    requantize_from=requantize_from, **kwargs)
        key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
        path = models_dir() / f"{fingerprint}-{preset}-{quant}-{key}.gguf"
        if path.exists():
            return path
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        if requantize_from is not None:
            src = make(preset, requantize_from, mtp_agreement, **kwargs)
            quantize(src, tmp, quant, threads=2)
        else:
            build(tmp, preset=preset, quant=quant, mtp_agreement=mtp_agreement, progress=False,
                  **kwargs)
        os.replace(tmp, path)
        return path

    return make


@pytest.fixture(scope="session")
def tiny_model_path(synthetic_model: SyntheticFactory) -> Path:
    """The default test model: preset ``tiny``, Q8_0, ``mtp_agreement=0.8``, text behaviour."""
    return synthetic_model()


@pytest.fixture(scope="session")
def tiny_nomtp_path(synthetic_model: SyntheticFactory) -> Path:
    """``tiny`` without an MTP head (no ``nextn_predict_layers``, no ``blk.4``)."""
    return synthetic_model(mtp=False)


@pytest.fixture(scope="session")
def chat_model_path(synthetic_model: SyntheticFactory) -> Path:
    """``tiny`` with the chat behaviour: after an assistant opener it greedily writes
    reasoning, ``</think>``, an answer and ``<|im_end|>``."""
    return synthetic_model(behaviour="chat")


@pytest.fixture()
def python_sigint_handler() -> Iterator[None]:
    """SIGINT raises ``KeyboardInterrupt`` during the test, however the process was started.

    A process started with SIGINT ignored (by a non-interactive shell that runs it in the
    background, as some CI runners do) keeps it ignored: Python then installs no handler, and
    ``_thread.interrupt_main()`` and Ctrl-C do nothing. Tests of Ctrl-C handling use this
    fixture to install Python's default handler for their duration.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not signal.default_int_handler:
            # None: set outside Python; SIG_DFL is what such a process started with
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


@pytest.fixture()
def two_servers() -> Iterator[tuple[RpcServer, RpcServer]]:
    """Two ``llama-mtp rpc-server`` processes on loopback, stopped afterwards."""
    a, b = RpcServer(), RpcServer()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
