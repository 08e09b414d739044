"""API keys, as llama-server checks them.

With keys set, every route but ``/health`` (and ``/v1/health``) needs ``Authorization: Bearer
KEY`` (or llama-server's alternative header ``X-Api-Key: KEY``); anything else is a 401 OpenAI
error object (``authentication_error``). Keys are compared in constant time
(:func:`hmac.compare_digest`, against every key, no early exit), so the timing of a refusal does
not tell how much of a guessed key was right.

``llama-mtp serve`` takes keys as llama-server does: ``--api-key KEY`` (a comma-separated list;
repeatable), ``--api-key-file FILE`` (one per line, ``#`` comments), or the environment variable
``LLAMA_API_KEY``. :func:`create_app` reads nothing from the environment: it takes the keys given.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import APIError

ENV_VAR = "LLAMA_API_KEY"
PUBLIC_PATHS = frozenset({"/health", "/v1/health"})


def parse_keys(values: str | Iterable[str] | None) -> list[str]:
    """Keys from a string (comma-separated) or a list of such strings; empty entries dropped."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    keys: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"an API key must be a string, not {type(value).__name__}")
        keys.extend(k.strip() for k in value.split(",") if k.strip())
    return keys


def keys_from_file(path: str | os.PathLike[str]) -> list[str]:
    """Keys from a file: one per line, blank lines and lines starting with ``#`` skipped."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


def keys_from_env() -> list[str]:
    """Keys from ``LLAMA_API_KEY`` (comma-separated), as llama-server reads it."""
    return parse_keys(os.environ.get(ENV_VAR))


def _route_path(scope: Scope) -> str:
    """The path inside this app (without the prefix it is mounted under)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):] or "/"
    return path


def _presented_key(scope: Scope) -> bytes | None:
    auth = xkey = None
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            auth = value
        elif name == b"x-api-key":
            xkey = value
    if auth is not None:
        scheme, _, token = auth.partition(b" ")
        return token.strip() if scheme.lower() == b"bearer" else None
    return xkey.strip() if xkey is not None else None


class APIKeyMiddleware:
    """ASGI middleware refusing requests without a valid key (see the module docstring)."""

    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("APIKeyMiddleware needs at least one key")
        self.app = app
        self._keys = [k.encode("utf-8") for k in keys]

    def valid(self, presented: bytes | None) -> bool:
        """Constant-time check of a presented key against every configured key."""
        if presented is None:
            return False
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(presented, key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope) in PUBLIC_PATHS \
                or self.valid(_presented_key(scope)):
            await self.app(scope, receive, send)
            return
        error = APIError(401, "Invalid API Key: send 'Authorization: Bearer <key>'",
                         "authentication_error", headers={"WWW-Authenticate": "Bearer"})
        await error.response()(scope, receive, send)
