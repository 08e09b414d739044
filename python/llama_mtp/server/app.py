"""``create_app``: the ASGI application; ``serve``: run it with uvicorn; ``BackgroundServer``: run
it on a thread (notebooks, tests)."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..model import Model, SpeculatorLike
from ..sampling import SamplingParams
from ..speculator import Speculator
from .auth import APIKeyMiddleware, parse_keys
from .engine import Engine
from .errors import APIError
from .routes import Admission, Routes, ServerState, default_model_name
from .schemas import Context, Limits

logger = logging.getLogger("llama_mtp.server")
access_logger = logging.getLogger("llama_mtp.server.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class AccessLogMiddleware:
    """One ``logging`` line per request (logger ``llama_mtp.server.access``), and request ids:
    a client's ``X-Request-Id`` (up to 128 of ``A-Za-z0-9._:-``) is kept, otherwise one is made;
    either way it is returned in ``X-Request-Id`` and is ``request.state.request_id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == b"x-request-id"), b"")
        text = given.decode("latin-1")
        request_id = text if _REQUEST_ID.fullmatch(text) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 0
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            access_logger.info('%s "%s %s" %s %.1f ms request_id=%s',
                               f"{client[0]}:{client[1]}" if client else "-", scope.get("method"),
                               scope.get("root_path", "") + scope.get("path", ""),
                               status or "-", (time.perf_counter() - t0) * 1e3, request_id)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 as OpenAI error objects."""
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    message = (f"File Not Found: {request.url.path}" if exc.status_code == 404
               else f"{request.method} {request.url.path}: {exc.detail}")
    return APIError(exc.status_code, message, kind, headers=exc.headers).response()


def create_app(model: Model, *, speculator: SpeculatorLike = None,
               api_key: str | Sequence[str] | None = None, model_name: str | None = None,
               chat_template: str | None = None, default_sampling: SamplingParams | None = None,
               limits: Limits | None = None, metrics: bool = True) -> Starlette:
    """The OpenAI-compatible server for ``model``, as an ASGI application (Starlette).

    Run it (``llama-mtp serve``, :func:`serve`, ``uvicorn``, any ASGI server) or mount it in your
    own Starlette / FastAPI application: ``app.mount("/llm", create_app(model))`` serves
    ``/llm/v1/chat/completions``.

    Args:
        model: the loaded :class:`~llama_mtp.Model` (the app does not close it).
        speculator: every request's default speculator (:meth:`Speculator.mtp`, a vLLM-style
            ``{"method": "mtp", "num_speculative_tokens": 2}``; ``None``: the one the model was
            loaded with, else plain decoding); a request may override it with
            ``speculative_config`` (within what the engine was loaded with).
        api_key: one key, a comma-separated list, or a list: requests must then send
            ``Authorization: Bearer KEY`` (every route but ``/health``).
        model_name: the id ``/v1/models`` reports (default: the file name).
        chat_template: a Jinja chat template replacing the GGUF's own.
        default_sampling: defaults of the sampling fields a request leaves out (by default
            :class:`SamplingParams` without a ``max_tokens`` cap, as llama-server).
        limits: body size, JSON depth, prompt length, choices and queue limits (:class:`Limits`).
        metrics: serve ``/metrics`` (Prometheus text).

    ``app.state.llama_mtp`` is the server's state; ``await app.state.llama_mtp.shutdown()``
    cancels the generations still running (the app's lifespan does it when the ASGI server
    stops; a mounted app does not get a lifespan of its own).
    """
    engine = Engine(model, chat_template)
    # The default: the speculator the model's engine was loaded with (Model(speculator=...)).
    spec = Speculator.coerce(speculator if speculator is not None else model.speculator)
    sampling = default_sampling if default_sampling is not None else SamplingParams(max_tokens=None)
    limits = limits or Limits()
    ctx = Context(model=model, sampling=sampling, speculator=spec, limits=limits,
                  model_name=model_name or default_model_name(model))
    state = ServerState(engine=engine, ctx=ctx, metrics_enabled=metrics,
                        admission=Admission(model.n_parallel, limits.max_queue))
    keys = parse_keys(api_key)
    middleware = [Middleware(AccessLogMiddleware)]
    if keys:
        middleware.append(Middleware(APIKeyMiddleware, keys=keys))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logger.info("serving %s as %r (%d slots, speculator: %s)", model.path, ctx.model_name,
                    model.n_parallel, spec.type)
        yield
        await state.shutdown()

    app = Starlette(routes=Routes(state).routes(), middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error})
    app.state.llama_mtp = state
    return app


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        raise ImportError("running the server needs uvicorn: pip install 'llama-mtp[server]'") from None
    return uvicorn


def _config(app: ASGIApp, host: str, port: int, shutdown_timeout: float, **kwargs: Any) -> Any:
    uvicorn = _uvicorn()
    # log_config=None: uvicorn's loggers go through the application's logging set-up; our access
    # log (with request ids) replaces uvicorn's.
    return uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None,
                          lifespan="on", timeout_graceful_shutdown=shutdown_timeout, **kwargs)


def serve(model: Model, host: str = "127.0.0.1", port: int = 8080, *,
          shutdown_timeout: float = 30.0, announce: bool = True, **app_kwargs: Any) -> None:
    """Run :func:`create_app`'s app with uvicorn until Ctrl-C / SIGTERM.

    Shutting down is graceful: no new connections, in-flight requests get ``shutdown_timeout``
    seconds to finish, then the ones left are cancelled (their generations stop within a step).
    ``app_kwargs`` go to :func:`create_app`.
    """
    app = create_app(model, **app_kwargs)
    server = _uvicorn().Server(_config(app, host, port, shutdown_timeout))
    if announce:
        shown = f"[{host}]" if ":" in host else host
        print(f"llama-mtp: serving {model.path} on http://{shown}:{port}/v1 (Ctrl-C to stop)",
              file=sys.stderr, flush=True)
    server.run()


class BackgroundServer:
    """An app served by uvicorn on a thread of this process (notebooks, tests).

    >>> srv = BackgroundServer(create_app(model))            # doctest: +SKIP
    >>> openai.OpenAI(base_url=srv.url + "/v1", api_key="-")  # doctest: +SKIP
    >>> srv.stop()                                            # doctest: +SKIP

    ``port=0`` picks a free port; :attr:`url` says which.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *,
                 shutdown_timeout: float = 10.0, start_timeout: float = 30.0, **kwargs: Any) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = host, int(self._sock.getsockname()[1])
        self.server = _uvicorn().Server(_config(app, host, self.port, shutdown_timeout, **kwargs))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        daemon=True, name="llama-mtp-server")
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down gracefully (as on SIGTERM) and wait for the thread."""
        self.server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
