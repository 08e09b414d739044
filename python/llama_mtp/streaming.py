"""Streaming a native generation to Python: a sync iterator and an asyncio iterator.

The native loop runs in a worker thread with the GIL released; it re-takes the GIL only to hand
each step's chunk over (a queue put). Closing the iterator (or breaking out of the ``for``)
cancels the native loop within one step.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Union

from . import _core
from .results import GenerationChunk, GenerationOutput

RunFn = Callable[[Callable[[str, list[int]], bool], _core.CancelToken], _core.GenerationResult]
_Item = Union[GenerationChunk, GenerationOutput, BaseException]


class GenerationStream(Iterator[GenerationChunk]):
    """Iterator of :class:`GenerationChunk`; after it ends, :attr:`output` holds the full result."""

    def __init__(self, run: RunFn) -> None:
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._token = _core.CancelToken()
        self.output: GenerationOutput | None = None
        """The complete result, once the stream is exhausted."""
        self._thread = threading.Thread(target=self._work, args=(run,), daemon=True,
                                        name="llama-mtp-stream")
        self._done = False
        self._thread.start()

    def _work(self, run: RunFn) -> None:
        def on_step(text: str, tokens: list[int]) -> bool:
            self._queue.put(GenerationChunk(text, list(tokens)))
            return not self._token.cancelled

        try:
            self._queue.put(GenerationOutput.from_native(run(on_step, self._token)))
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put(exc)

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> GenerationChunk:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, GenerationChunk):
            return item
        self._done = True
        self._thread.join()
        if isinstance(item, BaseException):
            raise item
        self.output = item
        raise StopIteration

    def close(self) -> None:
        """Stop the generation (within one decoding step) and wait for the worker."""
        self._token.cancel()
        while not self._done:
            try:
                next(self)
            except StopIteration:
                break

    def __del__(self) -> None:
        if not self._done:
            self._token.cancel()


async def astream(run: RunFn) -> AsyncIterator[GenerationChunk]:
    """Async form of :class:`GenerationStream`: the event loop is never blocked."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[_Item] = asyncio.Queue()
    token = _core.CancelToken()

    def on_step(text: str, tokens: list[int]) -> bool:
        loop.call_soon_threadsafe(items.put_nowait, GenerationChunk(text, list(tokens)))
        return not token.cancelled

    def work() -> None:
        item: _Item
        try:
            item = GenerationOutput.from_native(run(on_step, token))
        except BaseException as exc:
            item = exc
        loop.call_soon_threadsafe(items.put_nowait, item)

    thread = threading.Thread(target=work, daemon=True, name="llama-mtp-astream")
    thread.start()
    try:
        while True:
            item = await items.get()
            if isinstance(item, GenerationChunk):
                yield item
            elif isinstance(item, BaseException):
                raise item
            else:
                return
    finally:
        token.cancel()
        await asyncio.to_thread(thread.join)


