"""An OpenAI-compatible HTTP server over a :class:`~llama_mtp.Model`, standard library only.

Endpoints (also without the ``/v1`` prefix, as llama-server accepts):

* ``POST /v1/chat/completions``: OpenAI chat request; the reply's ``message`` carries
  ``content``, ``reasoning_content`` and ``tool_calls``; ``stream: true`` answers with
  server-sent events. llama-server extras: ``reasoning_budget_tokens``,
  ``chat_template_kwargs.enable_thinking``, ``speculative`` / ``speculative.n_max`` and vLLM's
  ``speculative_config`` per request.
* ``POST /v1/completions``: raw prompt (text or token ids), same sampling fields.
* ``GET /v1/models``, ``GET /health``.

Every completion carries ``usage`` and llama-server's ``timings`` object (plus vLLM's
speculative figures: ``num_drafts``, ``mean_acceptance_length``, ...). Errors are OpenAI error
objects: 400 for bad requests (``exceed_context_size_error`` when the prompt does not fit, as
llama-server), 404 for unknown paths, 500 otherwise.

Requests are served concurrently, one thread each, but generation on one :class:`Model` is
serialized by the engine: a second request waits until the first finishes. A client that
disconnects stops its generation within one decoding step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Protocol

from .chat import ChatDelta, ChatResult, ChatStream
from .errors import ContextOverflowError, ModelClosedError, MTPUnavailableError
from .model import Model, SpeculatorLike
from .results import GenerationChunk, GenerationStats
from .sampling import DEFAULT_SEED, SamplingParams
from .speculator import Speculator
from .streaming import GenerationStream

__all__ = ["create_server", "serve"]

logger = logging.getLogger("llama_mtp.server")

MAX_BODY_BYTES = 64 << 20
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_SPEC_OVERRIDES = ("type", "n_max", "n_min", "p_min")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.kind, self.extra = status, kind, extra


def _error_body(status: int, message: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "type": kind, **extra}}


# -- request parsing ---------------------------------------------------------------------------
def _number(body: Mapping[str, Any], key: str, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"'{key}' must be a number")
    if integer:
        if value != int(value):
            raise ValueError(f"'{key}' must be an integer")
        return int(value)
    return float(value)


def _logit_bias(value: Any, model: Model) -> dict[int, float]:
    """OpenAI's ``{"token_id": bias}`` or llama-server's ``[[token_or_text, bias_or_false]]``."""
    if isinstance(value, Mapping):
        pairs: list[Any] = list(value.items())
    elif isinstance(value, list):
        pairs = value
    else:
        raise ValueError("'logit_bias' must be an object or a list of [token, bias] pairs")
    out: dict[int, float] = {}
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError("'logit_bias' entries must be [token, bias] pairs")
        key, bias = pair
        if bias is False:
            bias = float("-inf")
        elif isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise ValueError("a 'logit_bias' value must be a number (or false)")
        if isinstance(key, str) and not key.lstrip("-").isdigit():
            ids = model.tokenize(key)
        elif isinstance(key, (int, str)) and not isinstance(key, bool):
            ids = [int(key)]
        else:
            raise ValueError("a 'logit_bias' key must be a token id or a text")
        for token in ids:
            if not 0 <= token < model.n_vocab:
                raise ValueError(f"'logit_bias' token {token} is out of range")
            out[token] = float(bias)
    return out


def _sampling(body: Mapping[str, Any], base: SamplingParams, model: Model) -> SamplingParams:
    """The request's sampling fields over the server's defaults (validated by SamplingParams)."""
    kw: dict[str, Any] = {}
    for key in ("temperature", "top_p", "min_p", "typical_p", "presence_penalty",
                "frequency_penalty", "repeat_penalty"):
        if (value := _number(body, key)) is not None:
            kw[key] = value
    for key in ("top_k", "repeat_last_n"):
        if (value := _number(body, key, integer=True)) is not None:
            kw[key] = value
    for key in ("max_completion_tokens", "max_tokens", "n_predict"):
        if (value := _number(body, key, integer=True)) is not None:
            kw["max_tokens"] = None if value == -1 else value
            break
    if (seed := _number(body, "seed", integer=True)) is not None:
        kw["seed"] = DEFAULT_SEED if seed == -1 else seed
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise ValueError("'stop' must be a string or a list of strings")
        kw["stop"] = [s for s in stop if s]
    if body.get("logit_bias") is not None:
        kw["logit_bias"] = _logit_bias(body["logit_bias"], model)
    if body.get("grammar") is not None:
        if not isinstance(body["grammar"], str):
            raise ValueError("'grammar' must be a string")
        kw["grammar"] = body["grammar"]
    if body.get("ignore_eos") is not None:
        kw["ignore_eos"] = bool(body["ignore_eos"])
    if (n := body.get("n")) is not None and n != 1:
        raise ValueError("only n=1 is supported")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise ValueError("logprobs are not supported")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type", "text") != "text"):
        raise ValueError("'response_format' other than {\"type\": \"text\"} is not supported")
    return replace(base, **{"stop": list(base.stop), "logit_bias": dict(base.logit_bias), **kw})


def _speculator(body: Mapping[str, Any], default: Speculator) -> Speculator:
    """``speculative_config`` (vLLM), ``speculative`` (a dict, or false/true), or llama-server's
    flat ``speculative.n_max`` keys; dicts without a type adjust the server's speculator."""
    value = body.get("speculative_config")
    if value is None:
        value = body.get("speculative")
    flat = {k.split(".", 1)[1]: body[k] for k in body if k.startswith("speculative.")}
    if value is False:
        return Speculator.none()
    if value is True and not flat:
        return default if default.enabled else Speculator.mtp()
    if value is None or value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError("'speculative_config' must be an object (or false)")
    config = {**value, **flat}
    if not config:
        return default
    if "model" in config or "model_path" in config:
        raise ValueError("a request cannot name a draft model file: start the server with it")
    if any(k in config for k in ("method", "spec_type", "type")):
        # The server's draft model (or MTP sidecar) serves requests for the same type.
        spec = Speculator.from_config({**config, "model_path": default.model_path})
        return spec if spec.type == default.type else replace(spec, model_path=None)
    unknown = set(config) - set(_SPEC_OVERRIDES)
    if unknown:
        raise ValueError(f"unsupported speculative keys: {sorted(unknown)}")
    base = default if default.enabled else Speculator.mtp()
    return replace(base, n_max=int(config.get("n_max", base.n_max)),
                   n_min=int(config.get("n_min", base.n_min)),
                   p_min=float(config.get("p_min", base.p_min)))


@dataclass
class _ChatRequest:
    messages: list[Any]
    sampling: SamplingParams
    speculator: Speculator
    enable_thinking: bool
    reasoning_budget: int | None
    tools: list[Mapping[str, Any]] | None
    tool_choice: str
    stream: bool


def _tool_choice(body: Mapping[str, Any],
                 tools: list[Mapping[str, Any]] | None) -> tuple[str, list[Mapping[str, Any]] | None]:
    choice = body.get("tool_choice")
    if choice is None:
        return "auto", tools
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise ValueError("'tool_choice' must be 'auto', 'none', 'required' or a function")
        return choice, tools
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        chosen = [t for t in tools or [] if isinstance(t.get("function"), Mapping)
                  and t["function"].get("name") == name]
        if not chosen:
            raise ValueError(f"'tool_choice' names a function not in 'tools': {name!r}")
        return "required", chosen
    raise ValueError("'tool_choice' must be a string or {\"type\": \"function\", \"function\": ...}")


def _chat_request(body: Mapping[str, Any], srv: _Server) -> _ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    if not all(isinstance(m, Mapping) for m in messages):
        raise ValueError("every message must be an object")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, Mapping) for t in tools)):
        raise ValueError("'tools' must be a list of objects")
    choice, tools = _tool_choice(body, tools or None)
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError("'chat_template_kwargs' must be an object")
    thinking = kwargs.get("enable_thinking", body.get("enable_thinking", True))
    if not isinstance(thinking, bool):
        raise ValueError("'enable_thinking' must be a boolean")
    budget = None
    for key in ("reasoning_budget_tokens", "reasoning_budget", "thinking_budget_tokens"):
        if (value := _number(body, key, integer=True)) is not None:
            budget = None if value == -1 else value
            break
    return _ChatRequest(messages, _sampling(body, srv.sampling, srv.model),
                        _speculator(body, srv.speculator), thinking, budget, tools, choice,
                        bool(body.get("stream", False)))


def _prompt(body: Mapping[str, Any], model: Model) -> str | list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str) and prompt:
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool)
                                                   for t in prompt):
        if not all(0 <= t < model.n_vocab for t in prompt):
            raise ValueError("a prompt token id is out of range")
        return list(prompt)
    raise ValueError("'prompt' must be a non-empty string or list of token ids (batches are not supported)")


# -- response building -------------------------------------------------------------------------
def _timings(stats: GenerationStats) -> dict[str, Any]:
    out = stats.to_dict()
    out["prompt_per_token_ms"] = stats.prompt_ms / stats.prompt_n if stats.prompt_n else 0.0
    out["predicted_per_token_ms"] = stats.predicted_ms / stats.predicted_n if stats.predicted_n else 0.0
    return out


def _usage(stats: GenerationStats) -> dict[str, Any]:
    prompt = stats.prompt_n + stats.cache_n
    return {"prompt_tokens": prompt, "completion_tokens": stats.predicted_n,
            "total_tokens": prompt + stats.predicted_n,
            "prompt_tokens_details": {"cached_tokens": stats.cache_n}}


def _finish(reason: str, tool_calls: bool = False) -> str:
    if tool_calls:
        return "tool_calls"
    return "length" if reason == "length" else "stop"


def _tool_calls(result: ChatResult) -> list[dict[str, Any]]:
    return [{"id": c.id or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in result.tool_calls]


def _message(result: ChatResult) -> dict[str, Any]:
    calls = _tool_calls(result)
    return {"role": "assistant", "content": result.content or (None if calls else ""),
            "reasoning_content": result.reasoning_content or None, "tool_calls": calls}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: Model, speculator: Speculator,
                 sampling: SamplingParams, model_name: str, chat_template: str | None) -> None:
        self.model, self.speculator, self.sampling = model, speculator, sampling
        self.model_name, self.chat_template = model_name, chat_template
        self.created = int(time.time())
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class _Stream(Protocol):
    def close(self) -> None: ...


def _close_quietly(stream: _Stream) -> None:
    try:
        stream.close()
    except Exception:  # the generation's own error was already reported (or nobody listens)
        logger.debug("error while closing a stream", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llama-mtp"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- plumbing ------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        self._streaming = False
        try:
            body = self._read_body() if method == "POST" else b""
            path = self.path.split("?", 1)[0].rstrip("/")
            path = path[3:] if path.startswith("/v1/") else path
            route = _ROUTES.get(path)
            if route is None:
                raise _HTTPError(404, f"File Not Found: {self.path}", "not_found_error")
            if route[0] != method:
                raise _HTTPError(405, f"{method} is not allowed on {self.path}")
            route[1](self, self._parse_json(body) if method == "POST" else {})
        except _DISCONNECTS:
            logger.info("%s disconnected (generation cancelled, if one was running)",
                        self.address_string())
            self.close_connection = True
        except _HTTPError as exc:
            self._fail(exc.status, str(exc), exc.kind, **exc.extra)
        except ContextOverflowError as exc:
            self._fail(400, str(exc), "exceed_context_size_error", n_ctx=self.server.model.n_ctx)
        except (ValueError, TypeError, FileNotFoundError, MTPUnavailableError) as exc:
            self._fail(400, str(exc), "invalid_request_error")
        except ModelClosedError as exc:
            self._fail(503, str(exc), "unavailable_error")
        except Exception as exc:  # never let an exception kill the server thread
            logger.exception("error serving %s %s", method, self.path)
            self._fail(500, f"{type(exc).__name__}: {exc}", "server_error")

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _HTTPError(400, "bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise _HTTPError(413, "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _parse_json(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _HTTPError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise _HTTPError(400, "the request body must be a JSON object")
        return body

    def _fail(self, status: int, message: str, kind: str, **extra: Any) -> None:
        body = _error_body(status, message, kind, **extra)
        try:
            if self._streaming:  # headers are gone: report in-band, then end the stream
                self._event(body)
                self._end_stream()
            else:
                self._send_json(status, body)
        except (OSError, ValueError):
            self.close_connection = True

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._streaming = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, obj: Any) -> None:
        self._write_chunk(b"data: " + json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n\n")

    def _end_stream(self) -> None:
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self._streaming = False

    def _client_gone(self) -> bool:
        """True once the peer closed its end (polled between decoding steps)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _pump(self, items: Iterator[Any], emit: Callable[[Any], None] | None) -> bool:
        """Feed ``items`` to ``emit``; False (the generation cancelled) if the client left."""
        for item in items:
            if self._client_gone():
                logger.info("%s disconnected: generation cancelled", self.address_string())
                self.close_connection = True
                return False
            if emit is not None:
                emit(item)
        return True

    # -- endpoints -----------------------------------------------------------------------------
    def _health(self, _: Mapping[str, Any]) -> None:
        if self.server.model.closed:
            self._send_json(503, _error_body(503, "the model is closed", "unavailable_error"))
        else:
            self._send_json(200, {"status": "ok"})

    def _models(self, _: Mapping[str, Any]) -> None:
        srv, model = self.server, self.server.model
        meta = {"arch": model.arch, "n_params": model.n_params, "size": model.size_bytes,
                "n_ctx": model.n_ctx, "n_ctx_train": model.n_ctx_train, "n_vocab": model.n_vocab,
                "has_mtp": model.has_mtp, "speculative_type": srv.speculator.type,
                "speculative_n_max": srv.speculator.n_max if srv.speculator.enabled else 0}
        self._send_json(200, {"object": "list", "data": [
            {"id": srv.model_name, "object": "model", "created": srv.created,
             "owned_by": "llama-mtp", "meta": meta}]})

    def _chat(self, body: Mapping[str, Any]) -> None:
        srv, req = self.server, _chat_request(body, self.server)
        stream = srv.model.chat_stream(req.messages, req.sampling, speculator=req.speculator,
                                       enable_thinking=req.enable_thinking,
                                       reasoning_budget=req.reasoning_budget, tools=req.tools,
                                       tool_choice=req.tool_choice, chat_template=srv.chat_template)
        try:
            if req.stream:
                self._chat_sse(stream)
            elif self._pump(stream, None):
                assert stream.result is not None
                self._send_json(200, self._envelope("chat.completion", {
                    "index": 0, "message": _message(stream.result), "logprobs": None,
                    "finish_reason": _finish(stream.result.finish_reason,
                                             bool(stream.result.tool_calls))}, stream.result.stats))
        finally:
            _close_quietly(stream)

    def _chat_sse(self, stream: ChatStream) -> None:
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": ident, "object": "chat.completion.chunk", "created": created,
                    "model": self.server.model_name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        def emit(d: ChatDelta) -> None:
            delta = {"content": d.content} if d.content else {}
            if d.reasoning_content:
                delta["reasoning_content"] = d.reasoning_content
            self._event(chunk(delta))

        first = next(stream, None)  # errors before any output still get a proper status
        self._start_stream()
        self._event(chunk({"role": "assistant", "content": ""}))
        if first is not None:
            emit(first)
        if not self._pump(stream, emit):
            return
        result = stream.result
        assert result is not None
        calls = _tool_calls(result)
        if calls:
            self._event(chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]}))
        final = chunk({}, _finish(result.finish_reason, bool(calls)))
        final.update(usage=_usage(result.stats), timings=_timings(result.stats))
        self._event(final)
        self._end_stream()

    def _completion(self, body: Mapping[str, Any]) -> None:
        srv = self.server
        prompt = _prompt(body, srv.model)
        sampling, spec = _sampling(body, srv.sampling, srv.model), _speculator(body, srv.speculator)
        stream = srv.model.stream(prompt, sampling, speculator=spec)
        try:
            if body.get("stream"):
                self._completion_sse(stream)
            else:
                if self._pump(stream, None):
                    out = stream.output
                    assert out is not None
                    self._send_json(200, self._envelope("text_completion", {
                        "index": 0, "text": out.text, "logprobs": None,
                        "finish_reason": _finish(out.finish_reason)}, out.stats))
        finally:
            _close_quietly(stream)

    def _completion_sse(self, stream: GenerationStream) -> None:
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
            return {"id": ident, "object": "text_completion", "created": created,
                    "model": self.server.model_name,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}

        first = next(stream, None)
        self._start_stream()
        if first is not None:
            self._event(chunk(first.text))

        def emit(c: GenerationChunk) -> None:
            if c.text:
                self._event(chunk(c.text))

        if not self._pump(stream, emit):
            return
        out = stream.output
        assert out is not None
        final = chunk("", _finish(out.finish_reason))
        final.update(usage=_usage(out.stats), timings=_timings(out.stats))
        self._event(final)
        self._end_stream()

    def _envelope(self, kind: str, choice: dict[str, Any], stats: GenerationStats) -> dict[str, Any]:
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
                "model": self.server.model_name, "choices": [choice], "usage": _usage(stats),
                "timings": _timings(stats)}


_ROUTES: dict[str, tuple[str, Callable[[_Handler, Mapping[str, Any]], None]]] = {
    "/chat/completions": ("POST", _Handler._chat),
    "/completions": ("POST", _Handler._completion),
    "/models": ("GET", _Handler._models),
    "/health": ("GET", _Handler._health),
}


def create_server(model: Model, host: str = "127.0.0.1", port: int = 8080, *,
                  speculator: SpeculatorLike = None, default_sampling: SamplingParams | None = None,
                  model_name: str | None = None, chat_template: str | None = None) -> ThreadingHTTPServer:
    """An OpenAI-compatible HTTP server for ``model``, bound but not yet serving.

    Call ``serve_forever()`` on it (in a thread, if need be) and ``shutdown()`` /
    ``server_close()`` to stop. ``port=0`` picks a free port: ``server.server_address`` tells
    which. ``speculator``: the default for every request (:meth:`Speculator.mtp`, a vLLM-style
    ``{"method": "mtp", "num_speculative_tokens": 2}``, or ``None`` for plain decoding);
    a request may override it with ``speculative_config``. ``default_sampling``: defaults of the
    sampling fields a request leaves out (by default :class:`SamplingParams` with no
    ``max_tokens`` cap, as llama-server). ``model_name``: the id reported by ``/v1/models``
    (default: the file name). ``chat_template``: a Jinja template replacing the GGUF's own.

    Requests are served concurrently by threads; generation on one model is serialized by the
    engine, so concurrent requests queue.
    """
    spec = Speculator.coerce(speculator)
    sampling = default_sampling if default_sampling is not None else SamplingParams(max_tokens=None)
    name = model_name or os.path.basename(model.path)
    return _Server((host, port), model, spec, sampling, name, chat_template)


def serve(model: Model, host: str = "127.0.0.1", port: int = 8080, *,
          speculator: SpeculatorLike = None, default_sampling: SamplingParams | None = None,
          model_name: str | None = None, chat_template: str | None = None,
          announce: bool = True) -> None:
    """Run :func:`create_server`'s server until Ctrl-C (KeyboardInterrupt), then close it.

    ``announce`` prints the server's address to stderr once it listens.
    """
    server = create_server(model, host, port, speculator=speculator,
                           default_sampling=default_sampling, model_name=model_name,
                           chat_template=chat_template)
    bound_host, bound_port = server.server_address[:2]
    if announce:
        print(f"llama-mtp: serving {model.path} on http://{bound_host!s}:{bound_port}/v1 "
              "(Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
