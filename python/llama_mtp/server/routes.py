"""The endpoints: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, ``/health``,
``/metrics`` (each also without ``/v1``, as llama-server accepts)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ..chat import ChatDelta, ChatResult
from ..grammar import json_depth
from ..model import Model
from ..results import GenerationChunk, GenerationOutput, TokenLogprob
from . import metrics as prom
from . import schemas
from .engine import Engine, Tracked
from .errors import APIError, bad_request, from_exception, unavailable
from .schemas import Context, Envelope, Limits
from .streaming import DONE, END, ClientGone, EventStreamResponse, event, merge, prepend, until_disconnected

logger = logging.getLogger("llama_mtp.server")


class Admission:
    """The server's own bound on generations in flight: the engine's slots plus ``max_queue``
    waiting; one more is refused (503 + ``Retry-After``) at once instead of piling up."""

    def __init__(self, slots: int, max_queue: int | None) -> None:
        self.slots = slots
        self.capacity = None if max_queue is None else slots + max_queue
        self.in_flight = 0

    def acquire(self, n: int) -> Ticket:
        """Places for ``n`` generations, held until the ticket is released (raises the 503)."""
        if self.capacity is not None and self.in_flight + n > self.capacity:
            raise unavailable(f"the server is busy: {self.in_flight} generations in flight, at most "
                              f"{self.capacity}; retry later")
        self.in_flight += n
        return Ticket(self, n)


class Ticket:
    """Places held in an :class:`Admission` (a context manager; ``release()`` is idempotent)."""

    def __init__(self, admission: Admission, n: int) -> None:
        self._admission, self._n = admission, n

    def release(self) -> None:
        """Give the places back."""
        if self._n:
            self._admission.in_flight -= self._n
            self._n = 0

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class ServerState:
    """Everything the endpoints share (``app.state.llama_mtp``)."""

    engine: Engine
    ctx: Context
    metrics_enabled: bool
    admission: Admission
    rejected: int = 0
    """Requests refused with 503 (``llamacpp:requests_rejected_total``)."""
    created: int = field(default_factory=lambda: int(time.time()))
    closing: bool = False

    @property
    def model(self) -> Model:
        """The model served."""
        return self.engine.model

    @property
    def limits(self) -> Limits:
        """The request limits."""
        return self.ctx.limits

    async def shutdown(self, join_timeout: float = 30.0) -> None:
        """Refuse new requests, cancel the generations still running and wait for them (at most
        ``join_timeout`` s). Called by the app's lifespan; call it yourself when the app is
        mounted in another (Starlette does not pass the lifespan on to mounted apps)."""
        self.closing = True
        self.engine.inflight.cancel_all()
        deadline = time.monotonic() + join_timeout  # the streams close on the server's loop
        while len(self.engine.inflight) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


async def read_json(request: Request, limits: Limits) -> dict[str, Any]:
    """The request body as a JSON object: 413 above the body limit, 400 for anything that is not
    a JSON object or nests deeper than the limit (a 100,000-level body included)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise bad_request("bad Content-Length") from None
        if declared > limits.max_body_bytes:
            raise APIError(413, f"request body of {declared} bytes is larger than this server's limit "
                           f"of {limits.max_body_bytes}", "invalid_request_error")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise APIError(413, f"request body larger than this server's limit of "
                           f"{limits.max_body_bytes} bytes", "invalid_request_error")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise bad_request(f"the JSON body nests deeper than {limits.max_json_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    if json_depth(body, limits.max_json_depth) > limits.max_json_depth:
        raise bad_request(f"the JSON body nests deeper than {limits.max_json_depth} levels")
    return body


Handler = Callable[[Request], Awaitable[Response]]


class Routes:
    """The endpoint functions, bound to one server's state."""

    def __init__(self, state: ServerState) -> None:
        self.s = state

    def routes(self) -> list[BaseRoute]:
        """Starlette routes, with and without ``/v1``."""
        table: list[tuple[str, Handler, str]] = [
            ("/chat/completions", self.chat_completions, "POST"),
            ("/completions", self.completions, "POST"),
            ("/models", self.models, "GET"),
            ("/health", self.health, "GET"),
        ]
        out: list[BaseRoute] = []
        for path, handler, method in table:
            guarded = self._guard(handler)
            out.append(Route("/v1" + path, guarded, methods=[method]))
            out.append(Route(path, guarded, methods=[method]))
        if self.s.metrics_enabled:
            out.append(Route("/metrics", self._guard(self.metrics), methods=["GET"]))
        return out

    def _guard(self, handler: Handler) -> Handler:
        """Every failure becomes an OpenAI error response; a departed client gets none."""
        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ClientGone:
                logger.info("request %s: client disconnected, generation cancelled",
                            _request_id(request))
                return Response(status_code=499)  # nobody reads it (nginx's "client closed")
            except Exception as exc:
                error = from_exception(exc, n_ctx=self.s.model.n_ctx)
                if error.status == 503:
                    self.s.rejected += 1
                if error.status >= 500 and error.status != 503:
                    logger.error("request %s: %s", _request_id(request), error.message)
                return error.response()
        guarded.__name__ = handler.__name__
        return guarded

    def _check_open(self) -> None:
        if self.s.closing:
            raise unavailable("the server is shutting down")

    # -- GET -------------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        """``{"status": "ok"}``; 503 while the model is closed or the server shuts down."""
        if self.s.model.closed:
            raise unavailable("the model is closed")
        self._check_open()
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        """The one model served, with llama-server-style ``meta``."""
        model, spec = self.s.model, self.s.ctx.speculator
        meta = {"arch": model.arch, "n_params": model.n_params, "size": model.size_bytes,
                "n_ctx": model.n_ctx, "n_ctx_train": model.n_ctx_train, "n_vocab": model.n_vocab,
                "has_mtp": model.has_mtp, "speculative_type": spec.type,
                "speculative_n_max": spec.n_max if spec.enabled else 0,
                "n_parallel": model.n_parallel}
        return JSONResponse({"object": "list", "data": [
            {"id": self.s.ctx.model_name, "object": "model", "created": self.s.created,
             "owned_by": "llama-mtp", "max_model_len": model.n_ctx, "meta": meta}]})

    async def metrics(self, request: Request) -> Response:
        """Prometheus text of the engine's counters (see :mod:`llama_mtp.server.metrics`)."""
        return PlainTextResponse(prom.render(self.s.model.metrics(), rejected=self.s.rejected),
                                 media_type=prom.CONTENT_TYPE)

    # -- chat ------------------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        """OpenAI chat completions (``stream``, ``n``, tools, ``response_format``, ...)."""
        self._check_open()
        body = await read_json(request, self.s.limits)
        req = schemas.chat_request(body, self.s.ctx)
        if req.stream:
            return await self._chat_stream(request, req)
        with self.s.admission.acquire(len(req.choices)):
            results = await until_disconnected(request.receive, self.s.engine.chat(req))
        env = Envelope("chat.completion", self.s.ctx.model_name)
        choices = []
        for i, r in enumerate(results):
            calls = schemas.tool_calls(r)
            choices.append({"index": i, "message": schemas.message(r, calls),
                            "logprobs": self._chat_logprobs(r.logprobs) if req.logprobs else None,
                            "finish_reason": schemas.finish_reason(r.finish_reason, bool(calls))})
        stats = [r.stats for r in results]
        return JSONResponse(env.wrap(choices, usage=schemas.usage(stats), timings=schemas.timings(stats)))

    def _chat_logprobs(self, items: list[TokenLogprob] | None) -> dict[str, Any] | None:
        return None if items is None else schemas.chat_logprobs(self.s.model, items)

    async def _chat_stream(self, request: Request, req: schemas.ChatRequest) -> Response:
        ticket = self.s.admission.acquire(len(req.choices))  # released when the stream ends
        streams: list[Tracked[ChatDelta, ChatResult]] = []
        try:
            for sp in req.choices:  # appended one by one: a failure closes those already open
                streams.append(self.s.engine.stream_chat(req, sp))
            # Errors before the first token (template, context size) still get their status.
            first = await until_disconnected(request.receive, _first(streams[0]))
        except BaseException:
            ticket.release()
            for st in streams:
                await st.aclose()
            raise
        env = Envelope("chat.completion.chunk", self.s.ctx.model_name)
        rid = _request_id(request)

        async def events() -> AsyncGenerator[bytes, None]:
            results: dict[int, ChatResult] = {}
            for i in range(len(streams)):
                yield event(env.wrap([{"index": i, "delta": {"role": "assistant", "content": ""},
                                       "logprobs": None, "finish_reason": None}]))
            iters: list[AsyncIterator[ChatDelta]] = list(streams)
            if first is not _NOTHING:
                iters[0] = prepend(first, streams[0])
            async for i, d in merge(iters):
                if d is END:
                    result = streams[i].result
                    assert result is not None
                    results[i] = result
                    calls = bool(result.tool_calls)
                    yield event(env.wrap([{"index": i, "delta": {}, "logprobs": None,
                                           "finish_reason": schemas.finish_reason(result.finish_reason, calls)}],
                                         timings=schemas.timings([result.stats])))
                    continue
                assert isinstance(d, ChatDelta)
                delta = _delta_dict(d)
                lp = self._chat_logprobs(d.logprobs) if req.logprobs else None
                if delta or lp:
                    yield event(env.wrap([{"index": i, "delta": delta, "logprobs": lp,
                                           "finish_reason": None}]))
            stats = [results[i].stats for i in sorted(results)]
            if req.include_usage:
                yield event(env.wrap([], usage=schemas.usage(stats), timings=schemas.timings(stats)))

        return self._event_stream(events(), rid, streams, ticket)

    def _event_stream(self, events: AsyncGenerator[bytes, None], rid: str, streams: Sequence[_Closable],
                      ticket: Ticket) -> _EventStream:
        """A streamed route's response: ``events``, then ``[DONE]``. An error once the headers are
        sent is reported in-band before ``[DONE]``; however it ends (client gone, shutdown), the
        engine streams are closed and the admission ticket released."""

        async def close() -> None:
            for st in streams:
                await st.aclose()
            ticket.release()

        async def framed() -> AsyncIterator[bytes]:
            try:
                async for e in events:
                    yield e
                yield DONE
            except (asyncio.CancelledError, ClientGone, GeneratorExit):
                raise
            except Exception as exc:  # headers are sent: report in-band, then end the stream
                yield event(from_exception(exc, n_ctx=self.s.model.n_ctx).body())
                yield DONE
            finally:
                await events.aclose()
                await close()

        return _EventStream(framed(), rid, close)

    # -- completions -----------------------------------------------------------------------------
    async def completions(self, request: Request) -> Response:
        """OpenAI (legacy) completions: text or token-id prompts, ``n``, ``logprobs``, ..."""
        self._check_open()
        body = await read_json(request, self.s.limits)
        req = schemas.completion_request(body, self.s.ctx)
        if req.stream:
            return await self._completion_stream(request, req)
        with self.s.admission.acquire(len(req.choices)):
            outs = await until_disconnected(request.receive, self.s.engine.complete(
                [req.prompt_of(i) for i in range(len(req.choices))], req.choices, req.speculator,
                cache_prompt=req.cache_prompt))
        env = Envelope("text_completion", self.s.ctx.model_name)
        choices = [{"index": i, "text": o.text,
                    "logprobs": self._completion_logprobs(o.logprobs) if req.logprobs is not None else None,
                    "finish_reason": schemas.finish_reason(o.finish_reason)} for i, o in enumerate(outs)]
        stats = [o.stats for o in outs]
        return JSONResponse(env.wrap(choices, usage=schemas.usage(stats), timings=schemas.timings(stats)))

    def _completion_logprobs(self, items: list[TokenLogprob] | None,
                             offset: int = 0) -> dict[str, Any] | None:
        return None if items is None else schemas.completion_logprobs(self.s.model, items, offset)

    async def _completion_stream(self, request: Request, req: schemas.CompletionRequest) -> Response:
        ticket = self.s.admission.acquire(len(req.choices))  # released when the stream ends
        streams: list[Tracked[GenerationChunk, GenerationOutput]] = []
        try:
            for i, sp in enumerate(req.choices):  # one by one: a failure closes those already open
                streams.append(self.s.engine.stream_completion(req.prompt_of(i), sp, req.speculator,
                                                               cache_prompt=req.cache_prompt))
            first = await until_disconnected(request.receive, _first(streams[0]))
        except BaseException:
            ticket.release()
            for st in streams:
                await st.aclose()
            raise
        env = Envelope("text_completion", self.s.ctx.model_name)

        async def events() -> AsyncGenerator[bytes, None]:
            outs: dict[int, GenerationOutput] = {}
            offsets = [0] * len(streams)
            iters: list[AsyncIterator[GenerationChunk]] = list(streams)
            if first is not _NOTHING:
                iters[0] = prepend(first, streams[0])
            async for i, c in merge(iters):
                if c is END:
                    out = streams[i].result
                    assert out is not None
                    outs[i] = out
                    yield event(env.wrap([{"index": i, "text": "", "logprobs": None,
                                           "finish_reason": schemas.finish_reason(out.finish_reason)}],
                                         timings=schemas.timings([out.stats])))
                    continue
                assert isinstance(c, GenerationChunk)
                lp = self._completion_logprobs(c.logprobs, offsets[i]) if req.logprobs is not None else None
                offsets[i] += len(c.text)
                if c.text or lp:
                    yield event(env.wrap([{"index": i, "text": c.text, "logprobs": lp,
                                           "finish_reason": None}]))
            stats = [outs[i].stats for i in sorted(outs)]
            if req.include_usage:
                yield event(env.wrap([], usage=schemas.usage(stats), timings=schemas.timings(stats)))

        return self._event_stream(events(), _request_id(request), streams, ticket)


_NOTHING: Any = object()


async def _first(stream: Tracked[Any, Any]) -> Any:
    """The stream's first item, or ``_NOTHING`` when it is empty (errors are raised)."""
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return _NOTHING


def _delta_dict(d: ChatDelta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if d.content:
        out["content"] = d.content
    if d.reasoning_content:
        out["reasoning_content"] = d.reasoning_content
    if d.tool_calls:
        out["tool_calls"] = []
        for c in d.tool_calls:
            call: dict[str, Any] = {"index": c.index}
            if c.id:
                call["id"] = c.id
                call["type"] = "function"
            fn: dict[str, Any] = {"arguments": c.arguments}
            if c.name:
                fn = {"name": c.name, **fn}
            call["function"] = fn
            out["tool_calls"].append(call)
    return out


class _Closable(Protocol):
    """An engine stream a route holds (AsyncGenerationStream, AsyncChatStream)."""

    async def aclose(self) -> None: ...


class _EventStream(EventStreamResponse):
    def __init__(self, events: AsyncIterator[bytes], request_id: str,
                 close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(events, on_close=close, on_disconnect=lambda: logger.info(
            "request %s: client disconnected mid-stream, generation cancelled", request_id))


def default_model_name(model: Model) -> str:
    """The file name of the model (``/v1/models``' id by default)."""
    return os.path.basename(model.path)
