"""The server's generations: the model's async streams, tracked so that shutdown can end them.

Every generation a route starts is one request of the model's batching engine, opened here:
a completion is :meth:`Model.astream <llama_mtp.Model.astream>`, a chat reply
:meth:`Model.achat_stream <llama_mtp.Model.achat_stream>` (no thread per request; the engine
batches the requests in flight). The choices of an ``n`` > 1 request are requests of their own,
generated together and stopped together. Each stream is registered in :class:`InFlight` until
it ends, so that :meth:`ServerState.shutdown <llama_mtp.server.routes.ServerState.shutdown>`
can end those still running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ..chat import ChatDelta, ChatResult
from ..model import Model, Prompt
from ..results import GenerationChunk, GenerationOutput
from ..sampling import SamplingParams
from ..speculator import Speculator
from .errors import unavailable
from .schemas import ChatRequest

T = TypeVar("T")
R = TypeVar("R")
T_co = TypeVar("T_co", covariant=True)


class EngineStream(Protocol[T_co]):
    """What the model's async streams offer (``AsyncGenerationStream``, ``AsyncChatStream``)."""

    def __anext__(self) -> Awaitable[T_co]: ...

    async def aclose(self) -> None: ...


class InFlight:
    """The streams the requests have open. Thread-safe: a mounted app's ``shutdown()`` may run
    on another thread (and event loop) than the server's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancels: dict[int, Callable[[], None]] = {}
        self._next = 0

    def add(self, cancel: Callable[[], None]) -> int:
        """Register a stream's ``cancel`` (callable from any thread); returns its key."""
        with self._lock:
            self._next += 1
            self._cancels[self._next] = cancel
            return self._next

    def remove(self, key: int) -> None:
        """The stream ``key`` has ended (idempotent)."""
        with self._lock:
            self._cancels.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cancels)

    def cancel_all(self) -> None:
        """Ask every open stream to end (each leaves the registry once it has)."""
        with self._lock:
            cancels = list(self._cancels.values())
        for cancel in cancels:
            cancel()


class Tracked(Generic[T, R]):
    """One engine stream of a request: its items, then :attr:`result` once exhausted. Registered
    in :class:`InFlight` until it ends or :meth:`aclose` (which cancels the engine's request
    within a step) is called."""

    def __init__(self, stream: EngineStream[T], result: Callable[[], R | None], inflight: InFlight) -> None:
        self._stream, self._result, self._inflight = stream, result, inflight
        self.result: R | None = None
        """The final result (the stream's ``output`` / ``result``), once exhausted."""
        loop = asyncio.get_running_loop()

        def cancel() -> None:  # InFlight.cancel_all, from any thread: the stream closes on its loop
            try:
                loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.aclose()))
            except RuntimeError:  # the loop is gone, and the stream with it
                inflight.remove(self._key)

        self._key = inflight.add(cancel)

    def __aiter__(self) -> Tracked[T, R]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            self._inflight.remove(self._key)
            self.result = self._result()
            if self.result is None:  # closed by InFlight.cancel_all while it was being read
                raise unavailable("the server is shutting down: the generation was cancelled") from None
            raise

    async def aclose(self) -> None:
        """Stop the generation (a no-op once it has ended) and forget the stream."""
        try:
            await self._stream.aclose()
        finally:
            self._inflight.remove(self._key)


async def collect(stream: Tracked[Any, R]) -> R:
    """The final result of ``stream``, its items skipped; the stream is closed in any case."""
    try:
        async for _ in stream:
            pass
    finally:
        await stream.aclose()
    assert stream.result is not None  # __anext__ raised otherwise
    return stream.result


class Engine:
    """Opens the model's streams for the routes (the one way a request reaches the model)."""

    def __init__(self, model: Model, chat_template: str | None = None) -> None:
        self.model = model
        self.chat_template = chat_template
        self.inflight = InFlight()

    def stream_completion(self, prompt: Prompt, params: SamplingParams, speculator: Speculator, *,
                          cache_prompt: bool = True) -> Tracked[GenerationChunk, GenerationOutput]:
        """Chunks of one completion; ``result``: its :class:`GenerationOutput`. The request is
        validated and queued now (bad input, a full queue raise here)."""
        stream = self.model.astream(prompt, params, speculator=speculator, cache_prompt=cache_prompt)
        return Tracked(stream, lambda: stream.output, self.inflight)

    async def complete(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams],
                       speculator: Speculator, *, cache_prompt: bool = True) -> list[GenerationOutput]:
        """Whole completions, one per (prompt, params) pair, generated together; the first
        failure, or cancelling the caller (a client that hangs up), stops them all."""
        async def one(prompt: Prompt, sp: SamplingParams) -> GenerationOutput:
            return await collect(self.stream_completion(prompt, sp, speculator, cache_prompt=cache_prompt))

        return await gather_all(*(one(p, sp) for p, sp in zip(prompts, params)))

    def stream_chat(self, req: ChatRequest, params: SamplingParams) -> Tracked[ChatDelta, ChatResult]:
        """Deltas of one chat reply to ``req`` sampled with ``params`` (one of ``req.choices``);
        ``result``: its :class:`ChatResult`."""
        stream = self.model.achat_stream(
            req.messages, params, speculator=req.speculator, enable_thinking=req.enable_thinking,
            reasoning_budget=req.reasoning_budget, tools=req.tools, tool_choice=req.tool_choice,
            chat_template=self.chat_template, json_schema=req.json_schema)
        return Tracked(stream, lambda: stream.result, self.inflight)

    async def chat(self, req: ChatRequest) -> list[ChatResult]:
        """Whole replies, one per choice of ``req``, generated and stopped together."""
        async def one(sp: SamplingParams) -> ChatResult:
            return await collect(self.stream_chat(req, sp))

        return await gather_all(*(one(sp) for sp in req.choices))


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

