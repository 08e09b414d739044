"""The server's view of the engine: async streams over :class:`~llama_mtp.Model`, and which engine
features this build has.

This module is the only place that knows how a request reaches the model. The batching engine
(``Model(n_parallel=...)``) adds features the server uses when they exist; each is detected by
one line in :func:`detect` (and, for the async paths, one ``if`` below), so that moving to them
is a one-line change:

* ``SamplingParams.logprobs`` / ``GenerationOutput.logprobs`` / ``GenerationChunk.logprobs``
  (``logprobs`` / ``top_logprobs``); chat log-probabilities also need ``ChatResult.logprobs``
  (and ``ChatDelta.logprobs`` when streamed);
* ``ChatDelta.tool_calls`` (tool calls streamed as they are parsed; without it a stream sends
  each call whole, in one delta, when the reply ends);
* ``Model.achat_stream`` and ``Model.astream`` with its ``output`` (requests without a thread
  each);
* ``Model.metrics()`` (``/metrics`` from the engine's own counters);
* ``errors.QueueFullError`` (503 + ``Retry-After`` from the engine's bounded queue);
* ``Model(n_parallel=...)`` (``-np``).

Without them, a request runs the model's thread-safe blocking calls (``stream``,
``chat_stream``, ``generate``) on a thread of its own and hands the results to the event loop;
the model serializes generations, so concurrent requests wait their turn.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from .. import errors as _errors
from ..chat import ChatDelta, ChatResult, MessageLike
from ..model import Model, SpeculatorLike
from ..results import GenerationChunk, GenerationOutput, GenerationStats
from ..sampling import SamplingParams
from .. import CancelToken

logger = logging.getLogger("llama_mtp.server")

T = TypeVar("T")
R = TypeVar("R")


# -- features ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Features:
    """Which engine features the loaded package offers (see the module docstring)."""

    logprobs: bool
    chat_logprobs: bool
    chat_stream_logprobs: bool
    streamed_tool_calls: bool
    async_engine: bool
    metrics: bool
    n_parallel: int

    def to_dict(self) -> dict[str, Any]:
        """For ``/v1/models``' ``meta`` and the logs."""
        return dataclasses.asdict(self)


def model_accepts(name: str) -> bool:
    """``Model(...)`` takes the keyword ``name`` (``n_parallel``, ``max_queue``, ``speculator``)."""
    return name in inspect.signature(Model.__init__).parameters


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def detect(model: Model) -> Features:
    """The features of this package's engine, for ``model``."""
    return Features(
        logprobs="logprobs" in _fields(SamplingParams),
        chat_logprobs="logprobs" in _fields(ChatResult),
        chat_stream_logprobs="logprobs" in _fields(ChatDelta),
        streamed_tool_calls="tool_calls" in _fields(ChatDelta),
        # the engine with achat_stream is the one whose astream() keeps its output
        async_engine=callable(getattr(model, "achat_stream", None)),
        metrics=callable(getattr(model, "metrics", None)),
        n_parallel=int(getattr(model, "n_parallel", 1) or 1),
    )


def is_queue_full(exc: BaseException) -> bool:
    """``exc`` is the engine's ``QueueFullError`` (more requests waiting than ``max_queue``)."""
    cls = getattr(_errors, "QueueFullError", None)
    return cls is not None and isinstance(exc, cls)


def engine_metrics(model: Model) -> dict[str, Any] | None:
    """``model.metrics().to_dict()`` when the engine has it, else ``None``."""
    fn = getattr(model, "metrics", None)
    if not callable(fn):
        return None
    snapshot = fn()
    out = snapshot.to_dict() if hasattr(snapshot, "to_dict") else dataclasses.asdict(snapshot)
    return dict(out)


class TokenLogprobLike(Protocol):
    """The engine's ``TokenLogprob`` (token, its log-probability, the top alternatives)."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


def logprobs_of(obj: object) -> list[TokenLogprobLike] | None:
    """The ``logprobs`` of an output / chunk / chat result, when the engine computed them."""
    value = getattr(obj, "logprobs", None)
    return None if value is None else list(value)


def with_logprobs(params: SamplingParams, k: int) -> SamplingParams:
    """``params`` asking for log-probabilities with ``k`` alternatives (engine feature)."""
    changes: dict[str, Any] = {"logprobs": k}  # a field of the batching engine's SamplingParams
    return dataclasses.replace(params, **changes)


# -- in-flight work ------------------------------------------------------------------------------
class InFlight:
    """The requests' native work now running, so that shutdown can cancel and wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancels: dict[int, Callable[[], None]] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._next = 0

    def add(self, cancel: Callable[[], None], thread: threading.Thread | None = None) -> int:
        with self._lock:
            self._next += 1
            self._cancels[self._next] = cancel
            if thread is not None:
                self._threads[self._next] = thread
            return self._next

    def remove(self, key: int) -> None:
        with self._lock:
            self._cancels.pop(key, None)
            self._threads.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cancels)

    def cancel_all(self, join_timeout: float = 30.0) -> None:
        """Cancel every generation still running and wait (up to ``join_timeout`` s) for their
        threads: no native work outlives the server."""
        with self._lock:
            cancels = list(self._cancels.values())
            threads = list(self._threads.values())
        for cancel in cancels:
            cancel()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(join_timeout)


# -- async streams -----------------------------------------------------------------------------
class ResultStream(Generic[T, R]):
    """An async iterator of items; once exhausted, :attr:`result` is the final result.

    ``aclose()`` (or cancelling the task that iterates) stops the generation.
    """

    result: R | None = None

    def __aiter__(self) -> ResultStream[T, R]:
        return self

    async def __anext__(self) -> T:  # pragma: no cover - abstract
        raise NotImplementedError

    async def aclose(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class ThreadStream(ResultStream[T, R]):
    """A blocking stream of the model iterated on a thread of its own, its items handed to the
    event loop. Cancelled by a flag the thread checks after each item (the model's streams yield
    one item per decoding step), then the stream's ``close()`` stops the native generation."""

    def __init__(self, open_stream: Callable[[], Iterator[T]], result_of: Callable[[Any], R | None],
                 inflight: InFlight, name: str,
                 observe: Callable[[R], None] | None = None) -> None:
        self._open, self._result_of, self._observe = open_stream, result_of, observe
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancel = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._key = inflight.add(self._cancel.set, self._thread)
        self._inflight = inflight
        self._thread.start()

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone (shutdown): stop generating
            self._cancel.set()

    def _run(self) -> None:
        stream: Iterator[T] | None = None
        try:
            stream = self._open()
            for item in stream:
                if self._cancel.is_set():
                    break
                self._put("item", item)
            else:
                self._put("done", self._result_of(stream))
            # cancelled: the consumer has gone, nothing is handed over
        except BaseException as exc:  # handed to the consumer, raised there
            self._put("error", exc)
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                try:
                    close()  # cancels the native loop (if still running) and waits for it
                except Exception:  # the generation's own error was already handed over
                    logger.debug("error while closing a stream", exc_info=True)
            if stream is not None and self._observe is not None:
                result = self._result_of(stream)  # also a cancelled generation's, when known
                if result is not None:
                    self._observe(result)
            self._inflight.remove(self._key)

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        try:
            kind, value = await self._queue.get()
        except BaseException:
            self._cancel.set()
            raise
        if kind == "item":
            return value  # type: ignore[no-any-return]
        self._finished = True
        if kind == "error":
            raise value
        self.result = value
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._finished = True
        self._cancel.set()


class AsyncEngineStream(ResultStream[T, R]):
    """A stream of the batching engine's async API (``Model.astream`` / ``Model.achat_stream``):
    no thread per request. Its final result is the iterator's ``output`` (a generation) or
    ``result`` (a chat) attribute once it is exhausted; ``aclose()`` cancels it."""

    def __init__(self, it: AsyncIterator[T], result_attr: str, inflight: InFlight,
                 observe: Callable[[R], None] | None = None) -> None:
        self._it, self._attr, self._observe = it, result_attr, observe
        loop = asyncio.get_running_loop()

        def cancel() -> None:  # from InFlight.cancel_all, on another thread
            try:
                loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.aclose()))
            except RuntimeError:  # the loop is gone, and the stream with it
                pass

        self._inflight, self._key = inflight, inflight.add(cancel)

    async def __anext__(self) -> T:
        try:
            return await self._it.__anext__()
        except StopAsyncIteration:
            self._inflight.remove(self._key)
            self.result = getattr(self._it, self._attr, None)
            if self.result is None:
                raise RuntimeError(f"the engine's stream ended without its {self._attr}") from None
            if self._observe is not None:
                self._observe(self.result)
            raise

    async def aclose(self) -> None:
        self._inflight.remove(self._key)
        close = getattr(self._it, "aclose", None)
        if close is not None:
            await close()


async def in_thread(fn: Callable[[], R], cancel: Callable[[], None], inflight: InFlight,
                    name: str) -> R:
    """Run the blocking ``fn`` on a thread of its own; cancelling the awaiting task calls
    ``cancel`` (which must make ``fn`` return soon: a CancelToken)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[R] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def run() -> None:
        try:
            value: Any = fn()
            ok = True
        except BaseException as exc:
            value, ok = exc, False
        finally:
            inflight.remove(key)
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop is gone: nobody waits
            pass

    thread = threading.Thread(target=run, daemon=True, name=name)
    key = inflight.add(cancel, thread)
    thread.start()
    try:
        return await future
    except asyncio.CancelledError:
        cancel()
        raise


# -- the calls the routes make -----------------------------------------------------------------
class Engine:
    """The model, its features, and the async calls the routes make."""

    def __init__(self, model: Model, observe: Callable[[GenerationStats], None] | None = None) -> None:
        self.model = model
        self.features = detect(model)
        self.inflight = InFlight()
        self._observe = observe or (lambda stats: None)

    def _observe_output(self, out: GenerationOutput | ChatResult) -> None:
        self._observe(out.stats)

    def stream_completion(self, prompt: str | list[int], params: SamplingParams,
                          speculator: SpeculatorLike, *,
                          cache_prompt: bool = True) -> ResultStream[GenerationChunk, GenerationOutput]:
        """Chunks of one completion; ``result`` is its :class:`GenerationOutput`."""
        model = self.model
        if self.features.async_engine:
            return AsyncEngineStream(model.astream(prompt, params, speculator=speculator,
                                                   cache_prompt=cache_prompt),
                                     "output", self.inflight, self._observe_output)

        def open_stream() -> Iterator[GenerationChunk]:
            return model.stream(prompt, params, speculator=speculator, cache_prompt=cache_prompt)

        return ThreadStream(open_stream, lambda s: s.output, self.inflight, "llama-mtp-server-stream",
                            self._observe_output)

    async def complete(self, prompts: Sequence[str | list[int]], params: Sequence[SamplingParams],
                       speculator: SpeculatorLike, *, cache_prompt: bool = True) -> list[GenerationOutput]:
        """Whole completions, one per (prompt, params) pair, generated concurrently (the batching
        engine batches them; today's engine runs them in turn) and cancelled together.

        Not ``Model.generate(list)``: each choice is its own request so that a client that hangs
        up cancels every one of them (a CancelToken per call)."""
        if self.features.async_engine:
            async def collect(prompt: str | list[int], sp: SamplingParams) -> GenerationOutput:
                stream = self.stream_completion(prompt, sp, speculator, cache_prompt=cache_prompt)
                try:
                    async for _ in stream:
                        pass
                finally:
                    await stream.aclose()
                assert stream.result is not None
                return stream.result

            return await gather_all(*(collect(p, sp) for p, sp in zip(prompts, params)))
        model, token = self.model, CancelToken()

        def generate(prompt: str | list[int], sp: SamplingParams) -> GenerationOutput:
            out = model.generate(prompt, sp, speculator=speculator, cache_prompt=cache_prompt,
                                 cancel=token)
            self._observe_output(out)  # a cancelled generation's tokens count too
            return out

        return await gather_all(*(in_thread(lambda p=p, sp=sp: generate(p, sp), token.cancel,  # type: ignore[misc]
                                            self.inflight, "llama-mtp-server-generate")
                                  for p, sp in zip(prompts, params)))

    def stream_chat(self, messages: Sequence[MessageLike], params: SamplingParams,
                    **kwargs: Any) -> ResultStream[ChatDelta, ChatResult]:
        """Deltas of one chat reply; ``result`` is its :class:`ChatResult`."""
        model = self.model
        if self.features.async_engine:
            return AsyncEngineStream(model.achat_stream(messages, params, **kwargs),
                                     "result", self.inflight, self._observe_output)

        def open_stream() -> Iterator[ChatDelta]:
            return model.chat_stream(messages, params, **kwargs)

        # A cancelled ChatStream has no result: its tokens are not counted by the server.
        return ThreadStream(open_stream, lambda s: s.result, self.inflight, "llama-mtp-server-chat",
                            self._observe_output)

    async def chat(self, messages: Sequence[MessageLike], params: SamplingParams,
                   **kwargs: Any) -> ChatResult:
        """One whole chat reply, cancellable (collected from :meth:`stream_chat`)."""
        stream = self.stream_chat(messages, params, **kwargs)
        try:
            async for _ in stream:
                pass
        finally:
            await stream.aclose()
        assert stream.result is not None
        return stream.result


async def gather_all(*aws: Awaitable[T]) -> list[T]:
    """``asyncio.gather``, but the first failure (or a cancellation) cancels the others: the
    choices of one request stop together."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
