"""Streaming a request of the native engine to Python: a sync iterator and an asyncio iterator.

The engine's scheduler thread is native and never takes the GIL: each step's chunk goes into the
request's native queue, which the consumer reads with the GIL released while it waits. A busy
Python thread therefore cannot slow decoding down (a GIL hand-over can take a whole switch
interval, 5 ms, per token). Closing the iterator (or breaking out of the ``for``) cancels the
request within one engine step and frees its slot.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

from . import _core
from .results import GenerationChunk, GenerationOutput


def _chunk(item: tuple[str, list[int], list[_core.TokenLogprob]]) -> GenerationChunk:
    return GenerationChunk.from_native(item[0], item[1], item[2])


class GenerationStream(Iterator[GenerationChunk]):
    """Iterator of :class:`GenerationChunk`; after it ends, :attr:`output` holds the full result."""

    def __init__(self, request: _core.Request, with_logprobs: bool = False) -> None:
        self._request = request
        self._with_logprobs = with_logprobs
        self.output: GenerationOutput | None = None
        """The complete result, once the stream is exhausted."""
        self._done = False

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> GenerationChunk:
        if self._done:
            raise StopIteration
        try:
            item = self._request.next_chunk()
        except BaseException:  # KeyboardInterrupt while waiting: the request stops too
            self.close()
            raise
        if item is not None:
            return _chunk(item)
        self._done = True
        self.output = GenerationOutput.from_native(self._request.result(), self._with_logprobs)
        raise StopIteration

    @property
    def pending(self) -> int:
        """Chunks decoded and not yet taken."""
        return int(self._request.pending)

    def close(self) -> None:
        """Stop the generation (within one engine step) and wait for it to end."""
        self._request.cancel()
        while not self._done:
            try:
                next(self)
            except StopIteration:
                break
            except BaseException:
                self._done = True
                raise

    def __del__(self) -> None:
        if not self._done:
            self._request.cancel()


class AsyncGenerationStream(AsyncIterator[GenerationChunk]):
    """Async iterator of :class:`GenerationChunk`: the event loop is never blocked. After it
    ends, :attr:`output` holds the full result.

    A forwarding thread moves chunks from the native queue onto the event loop (started at the
    first ``__anext__``); leaving the ``async for`` early and calling :meth:`aclose` (or
    cancelling the task) cancels the request.
    """

    def __init__(self, request: _core.Request, with_logprobs: bool = False) -> None:
        self._request = request
        self._with_logprobs = with_logprobs
        self.output: GenerationOutput | None = None
        """The complete result, once the stream is exhausted."""
        self._items: asyncio.Queue[GenerationChunk | BaseException | None] | None = None
        self._forwarder: threading.Thread | None = None
        self._done = False

    def _start(self) -> asyncio.Queue[GenerationChunk | BaseException | None]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[GenerationChunk | BaseException | None] = asyncio.Queue()
        request = self._request

        def hand_over(item: GenerationChunk | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the event loop closed under an abandoned iterator
                request.cancel()

        def forward() -> None:
            try:
                while (item := request.next_chunk()) is not None:
                    hand_over(_chunk(item))
                hand_over(None)
            except BaseException as exc:  # handed to the consumer, raised there
                hand_over(exc)

        self._forwarder = threading.Thread(target=forward, daemon=True, name="llama-mtp-astream")
        self._forwarder.start()
        return items

    def __aiter__(self) -> AsyncGenerationStream:
        return self

    async def __anext__(self) -> GenerationChunk:
        if self._done:
            raise StopAsyncIteration
        if self._items is None:
            self._items = self._start()
        try:
            item = await self._items.get()
        except BaseException:  # the task was cancelled while waiting
            await self.aclose()
            raise
        if isinstance(item, BaseException):
            await self._finish()
            raise item
        if item is not None:
            return item
        await self._finish()
        self.output = GenerationOutput.from_native(self._request.result(), self._with_logprobs)
        raise StopAsyncIteration

    async def _finish(self) -> None:
        self._done = True
        if self._forwarder is not None:
            await asyncio.to_thread(self._forwarder.join)

    async def aclose(self) -> None:
        """Cancel the request (within one engine step) and wait for the forwarding thread."""
        self._request.cancel()
        if not self._done:
            self._done = True
            if self._forwarder is not None:
                await asyncio.to_thread(self._forwarder.join)

    def __del__(self) -> None:
        if not self._done:
            self._request.cancel()
