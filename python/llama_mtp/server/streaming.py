"""Server-sent events, and noticing a client that hangs up.

A client that disconnects — in the middle of a stream or while it waits for a whole reply —
cancels its generation: the response listens for the ASGI ``http.disconnect`` message while it
generates, and cancels the task that drives the engine stream, whose ``finally`` stops the
native generation (within one decoding step) and frees its slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .schemas import dumps

logger = logging.getLogger("llama_mtp.server")

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"


def event(obj: Any) -> bytes:
    """One SSE ``data:`` event carrying ``obj`` as JSON."""
    return b"data: " + dumps(obj) + b"\n\n"


class ClientGone(Exception):
    """The client disconnected before its reply was complete."""


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(receive: Receive, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` while watching for the client to hang up; if it does, cancel the
    awaitable (its ``finally`` clauses stop the generation) and raise :class:`ClientGone`."""
    task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    watcher: asyncio.Future[None] = asyncio.ensure_future(_wait_disconnect(receive))
    both: set[asyncio.Future[Any]] = {task, watcher}
    try:
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is going away
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        return task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    raise ClientGone


class EventStreamResponse(Response):
    """An ASGI ``text/event-stream`` response over an async iterator of encoded events.

    While it sends, it listens for ``http.disconnect``; on a disconnect it cancels the iteration
    (closing the iterator, which cancels the generation) and calls ``on_disconnect``.
    ``on_close`` runs at the end in every case (the generations' clean-up).
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], *, headers: dict[str, str] | None = None,
                 on_disconnect: Callable[[], None] | None = None,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(status_code=200, media_type=self.media_type)
        self.events = events
        self.extra_headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})}
        self.on_disconnect = on_disconnect
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            # Also when the events never started (an unstarted generator's finally never runs).
            if self.on_close is not None:
                await self.on_close()

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in self.extra_headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        producer: asyncio.Future[None] = asyncio.ensure_future(self._produce(send))
        watcher: asyncio.Future[None] = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The ASGI server cancels what is still running when its graceful-shutdown time is
            # up: stop generating, tell the client in-band, end the response normally.
            producer.cancel()
            watcher.cancel()
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            try:  # first, while the event loop still runs: the ASGI server will not wait long
                await send({"type": "http.response.body", "more_body": True, "body": event(
                    {"error": {"message": "the server is shutting down", "type": "unavailable_error",
                               "param": None, "code": 503}}) + DONE})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # the client is gone too
                pass
            logger.info("stream cancelled: the server is shutting down")
            # The generation ends (the stream's clean-up cancels it); the closing event loop may
            # cancel this task once more meanwhile: the clean-up still completes.
            cleanup = asyncio.gather(producer, watcher, return_exceptions=True)
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                await cleanup
            return
        if producer.done():
            watcher.cancel()
            try:
                producer.result()
                return
            except ClientGone:  # send() failed: the peer is gone
                pass
        else:
            producer.cancel()
            try:
                await producer
            except (asyncio.CancelledError, ClientGone):
                pass
        if self.on_disconnect is not None:
            self.on_disconnect()

    async def _produce(self, send: Send) -> None:
        events = self.events
        try:
            async for chunk in events:
                await self._send(send, {"type": "http.response.body", "body": chunk, "more_body": True})
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    @staticmethod
    async def _send(send: Send, message: Message) -> None:
        try:
            await send(message)
        except OSError as exc:  # uvicorn's ClientDisconnected (ASGI spec >= 2.4) is an OSError
            raise ClientGone from exc


class _End:
    """Marks the end of one of :func:`merge`'s iterators."""


END = _End()


async def merge(streams: list[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T | _End]]:
    """Items of several async iterators as they come, tagged with the iterator's index, and
    ``(index, END)`` when that iterator is exhausted (the choices of an ``n`` > 1 request,
    generated concurrently). An iterator's exception is raised here; closing the merge cancels
    the iterators still running (the caller closes the streams themselves)."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield 0, item
        yield 0, END
        return
    queue: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue()

    async def pump(i: int, it: AsyncIterator[T]) -> None:
        try:
            async for item in it:
                await queue.put((i, item, None))
            await queue.put((i, END, None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put((i, END, exc))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(tasks)
    try:
        while remaining:
            i, item, exc = await queue.get()
            if exc is not None:
                raise exc
            if item is END:
                remaining -= 1
            yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    """``first``, then the items of ``rest``."""
    yield first
    async for item in rest:
        yield item
