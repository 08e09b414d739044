"""Streaming a native generation to Python: a sync iterator and an asyncio iterator.

The native loop runs in a worker thread with the GIL released and never takes it per step: each
step's chunk goes into a native queue (:class:`llama_mtp._core.StepQueue`), which the consumer
reads with the GIL released while it waits. A busy Python thread therefore cannot slow the
decoding loop down (a GIL hand-over can take a whole switch interval, 5 ms, per token). Closing
the iterator (or breaking out of the ``for``) cancels the native loop within one step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Union

from . import _core
from .results import GenerationChunk, GenerationOutput

RunFn = Callable[[_core.StepQueue, _core.CancelToken], _core.GenerationResult]
_Outcome = Union[GenerationOutput, BaseException, None]


class _Worker(threading.Thread):
    """Runs one native generation into a StepQueue; keeps its result or exception."""

    def __init__(self, run: RunFn, steps: _core.StepQueue, token: _core.CancelToken, name: str) -> None:
        super().__init__(daemon=True, name=name)
        self._run, self._steps, self._token = run, steps, token
        self.outcome: _Outcome = None

    def run(self) -> None:
        try:
            self.outcome = GenerationOutput.from_native(self._run(self._steps, self._token))
        except BaseException as exc:  # handed to the consumer, raised there
            self.outcome = exc
        finally:
            self._steps.finish()  # also when the call failed before reaching the native loop


class GenerationStream(Iterator[GenerationChunk]):
    """Iterator of :class:`GenerationChunk`; after it ends, :attr:`output` holds the full result."""

    def __init__(self, run: RunFn) -> None:
        self._steps = _core.StepQueue()
        self._token = _core.CancelToken()
        self.output: GenerationOutput | None = None
        """The complete result, once the stream is exhausted."""
        self._done = False
        self._worker = _Worker(run, self._steps, self._token, "llama-mtp-stream")
        self._worker.start()

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> GenerationChunk:
        if self._done:
            raise StopIteration
        item = self._steps.get()
        if item is not None:
            return GenerationChunk(item[0], item[1])
        self._done = True
        self._worker.join()
        outcome = self._worker.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        self.output = outcome
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
    """Async form of :class:`GenerationStream`: the event loop is never blocked.

    A forwarding thread moves chunks from the native queue onto the event loop, so neither the
    decoding loop nor the event loop ever waits for the other.
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[GenerationChunk | None] = asyncio.Queue()
    steps = _core.StepQueue()
    token = _core.CancelToken()
    worker = _Worker(run, steps, token, "llama-mtp-astream")

    def hand_over(chunk: GenerationChunk | None) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, chunk)
        except RuntimeError:  # the event loop closed under an abandoned iterator
            token.cancel()

    def forward() -> None:
        while (item := steps.get()) is not None:
            hand_over(GenerationChunk(item[0], item[1]))
        worker.join()
        hand_over(None)

    forwarder = threading.Thread(target=forward, daemon=True, name="llama-mtp-astream-forward")
    worker.start()
    forwarder.start()
    try:
        while (chunk := await items.get()) is not None:
            yield chunk
        if isinstance(worker.outcome, BaseException):
            raise worker.outcome
    finally:
        token.cancel()
        await asyncio.to_thread(forwarder.join)
