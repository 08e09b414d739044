"""The batching engine's Python facade: requests in; results, streams and metrics out.

An :class:`Engine` owns ``n_parallel`` sequence slots in one llama.cpp context and a native
scheduler thread that decodes one batch per step for all of them (continuous batching, chunked
prefill, MTP drafting and verification for every speculating slot). Calls from any number of
threads or asyncio tasks are queued and admitted into free slots as they arrive.

:class:`~llama_mtp.Model` opens one for its generation methods; chat and the server use it
through :class:`~llama_mtp.Model`'s public methods.

Exit: the scheduler threads are native and never take the GIL. An ``atexit`` hook closes every
live engine (pending requests end with :class:`~llama_mtp.errors.ModelClosedError`) and tells the
native layer that threads still waiting in it must never re-take the GIL -- a daemon thread that
did so during the interpreter's finalization used to abort the process.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _core
from .results import GenerationOutput
from .speculator import Speculator
from .streaming import AsyncGenerationStream, GenerationStream

__all__ = ["Engine", "EngineMetrics"]


@dataclass(frozen=True)
class EngineMetrics:
    """Counters of a model's engine since it was loaded.

    Names follow llama-server's ``/metrics`` (``llamacpp:`` prefix) and vLLM's ``spec_decode_*``
    counters; llama-server's ``n_busy_slots_per_decode`` is
    ``n_busy_slots_total / n_decode_total``.
    """

    n_parallel: int = 0
    requests_processing: int = 0
    """Slots serving a request now."""
    requests_deferred: int = 0
    """Requests waiting for a slot."""
    kv_cache_tokens: int = 0
    kv_cache_usage_ratio: float = 0.0
    prompt_tokens_total: int = 0
    prompt_seconds_total: float = 0.0
    tokens_predicted_total: int = 0
    tokens_predicted_seconds_total: float = 0.0
    n_decode_total: int = 0
    """Batches decoded."""
    n_busy_slots_total: int = 0
    """Sum over decoded batches of the requests in each."""
    requests_finished_total: int = 0
    decode_seconds_total: float = 0.0
    """Time in decoding batches (the target, and the draft context following it)."""
    draft_seconds_total: float = 0.0
    """Time in drafting passes (one per step that drafted, for all speculating requests)."""
    n_draft_passes_total: int = 0
    spec_decode_num_drafts: int = 0
    spec_decode_num_draft_tokens: int = 0
    spec_decode_num_accepted_tokens: int = 0
    spec_decode_num_accepted_tokens_per_pos: list[int] = field(default_factory=list)

    @property
    def n_busy_slots_per_decode(self) -> float:
        """Average requests per decoded batch (llama-server's gauge)."""
        return self.n_busy_slots_total / self.n_decode_total if self.n_decode_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Every counter, for JSON."""
        out = asdict(self)
        out["n_busy_slots_per_decode"] = self.n_busy_slots_per_decode
        return out

    @classmethod
    def from_native(cls, m: _core.EngineMetrics) -> EngineMetrics:
        """Copy from the extension's object (fields of the same names)."""
        values = {name: getattr(m, name) for name in cls.__dataclass_fields__}
        values["spec_decode_num_accepted_tokens_per_pos"] = list(m.spec_decode_num_accepted_tokens_per_pos)
        return cls(**values)


_live: weakref.WeakSet[Engine] = weakref.WeakSet()
_live_lock = threading.Lock()


def _close_all_at_exit() -> None:
    # Runs before the interpreter finalizes: from here on no waiting thread re-takes the GIL in
    # native code, and no native engine thread is left running.
    _core.begin_shutdown()
    with _live_lock:
        engines = list(_live)
    for engine in engines:
        engine.close()


atexit.register(_close_all_at_exit)


class Engine:
    """Sequence slots and the native scheduler that batches their requests.

    Args:
        model: the loaded native model.
        context: how the context is created (``n_ctx`` is shared by the slots as in llama-server).
        n_parallel: sequence slots (``-np``).
        max_queue: requests that may wait for a slot; one more raises
            :class:`~llama_mtp.errors.QueueFullError`.
        speculator: the engine's speculator, fixed for its lifetime; ``None`` lets the first
            speculating request choose it (and a later, different one reconfigure it when the
            engine is idle).
        warmup: one throwaway decode now (llama.cpp's default; ``--no-warmup`` skips it), so
            that the first request does not pay the first graph's costs.
    """

    def __init__(self, model: _core.Model, context: _core.ContextOptions, *, n_parallel: int = 1,
                 max_queue: int = 1024, speculator: Speculator | None = None, warmup: bool = False) -> None:
        options = _core.EngineOptions()
        options.n_parallel = int(n_parallel)
        options.max_queue = int(max_queue)
        options.warmup = bool(warmup)
        if speculator is not None:
            options.speculator = speculator.to_native()
        self._native = _core.Engine(model, context, options)
        with _live_lock:
            _live.add(self)

    @property
    def n_parallel(self) -> int:
        """Sequence slots."""
        return int(self._native.n_parallel)

    @property
    def n_ctx_seq(self) -> int:
        """Most tokens one request's sequence may hold (prompt and generated)."""
        return int(self._native.n_ctx_seq)

    def submit(self, tokens: Sequence[int], sampling: _core.SamplingOptions, speculator: Speculator, *,
               cache_prompt: bool = True, stream: bool = False,
               cancel: _core.CancelToken | None = None) -> _core.Request:
        """Queue one request (validated first: bad input raises here, before any work)."""
        return self._native.submit(list(tokens), sampling, speculator.to_native(), cache_prompt, stream, cancel)

    def generate(self, tokens: Sequence[int], sampling: _core.SamplingOptions, speculator: Speculator, *,
                 cache_prompt: bool = True, cancel: _core.CancelToken | None = None) -> GenerationOutput:
        """Run one request to its end (Ctrl-C cancels it and raises KeyboardInterrupt)."""
        request = self.submit(tokens, sampling, speculator, cache_prompt=cache_prompt, cancel=cancel)
        return GenerationOutput.from_native(request.result(), sampling.logprobs >= 0)

    def generate_many(self, requests: Sequence[tuple[Sequence[int], _core.SamplingOptions]],
                      speculator: Speculator, *, cache_prompt: bool = True,
                      cancel: _core.CancelToken | None = None) -> list[GenerationOutput]:
        """Submit every request at once and wait for all (they are batched together); ``cancel``
        stops them all."""
        handles: list[_core.Request] = []
        try:
            for tokens, sampling in requests:
                handles.append(self.submit(tokens, sampling, speculator, cache_prompt=cache_prompt, cancel=cancel))
            return [GenerationOutput.from_native(h.result(), s.logprobs >= 0)
                    for h, (_, s) in zip(handles, requests)]
        except BaseException:
            for h in handles:
                h.cancel()
            raise

    def stream(self, tokens: Sequence[int], sampling: _core.SamplingOptions, speculator: Speculator, *,
               cache_prompt: bool = True) -> GenerationStream:
        """A request whose chunks are handed out as they are decoded."""
        request = self.submit(tokens, sampling, speculator, cache_prompt=cache_prompt, stream=True)
        return GenerationStream(request, sampling.logprobs >= 0)

    def astream(self, tokens: Sequence[int], sampling: _core.SamplingOptions, speculator: Speculator, *,
                cache_prompt: bool = True) -> AsyncGenerationStream:
        """Async form of :meth:`stream`: the event loop is never blocked. The request is
        submitted (and validated) now, before the first ``await``."""
        request = self.submit(tokens, sampling, speculator, cache_prompt=cache_prompt, stream=True)
        return AsyncGenerationStream(request, sampling.logprobs >= 0)

    def metrics(self) -> EngineMetrics:
        """Counters since the engine started."""
        return EngineMetrics.from_native(self._native.metrics())

    def reset_cache(self) -> None:
        """Forget every slot's cached prompt prefix."""
        self._native.reset_cache()

    def close(self) -> None:
        """Cancel every request (they raise ModelClosedError) and stop the scheduler thread."""
        self._native.close()
        with _live_lock:
            _live.discard(self)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return bool(self._native.closed)

