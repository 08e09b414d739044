"""The OpenAI-compatible server: an ASGI application over a :class:`~llama_mtp.Model`.

>>> from llama_mtp import Model, Speculator
>>> from llama_mtp.server import create_app, serve
>>> model = Model("model.gguf", n_ctx=8192)                          # doctest: +SKIP
>>> app = create_app(model, speculator=Speculator.mtp(2), api_key="secret")   # doctest: +SKIP
>>> my_fastapi_app.mount("/llm", app)                                 # doctest: +SKIP
>>> serve(model, "127.0.0.1", 8080)         # or run it with uvicorn  # doctest: +SKIP

Install with ``pip install 'llama-mtp[server]'`` (Starlette and uvicorn).

**Why Starlette, not FastAPI.** The app is a Starlette application, which FastAPI applications
*are*: it mounts in either (``app.mount("/llm", ...)``) and runs on any ASGI server. FastAPI's
additions — pydantic models, OpenAPI generation, dependency injection — buy nothing here: the
requests are validated by hand anyway, to answer every unsupported field, wrong type, or JSON
nested 100,000 levels deep with an OpenAI error object that names the field (pydantic's errors
have another shape, and pydantic-core would be a compiled dependency of its own). Starlette plus
uvicorn is the smaller dependency (pure Python, on anyio); FastAPI users lose nothing.

Split by responsibility: :mod:`.app` (``create_app``, ``serve``, middleware), :mod:`.routes`
(endpoints), :mod:`.schemas` (request validation, response shapes), :mod:`.streaming` (SSE,
disconnects), :mod:`.errors` (OpenAI error objects), :mod:`.metrics` (Prometheus), :mod:`.auth`
(API keys), :mod:`.engine` (the model's async streams the routes open, tracked for shutdown).
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("llama_mtp.server needs the server extra: pip install 'llama-mtp[server]'") from exc

from .app import BackgroundServer, create_app, serve
from .errors import APIError
from .schemas import Limits

__all__ = ["create_app", "serve", "BackgroundServer", "Limits", "APIError"]
