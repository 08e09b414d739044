"""OpenAI error objects, and the one mapping from exceptions to HTTP statuses.

Every error the server answers has OpenAI's shape, with llama-server's integer ``code``::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "top_p", "code": 400}}

The ``openai`` client raises the matching ``openai.BadRequestError`` / ``AuthenticationError`` /
``NotFoundError`` / ``RateLimitError``-style exceptions from these.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from ..errors import (
    ChatTemplateError,
    ContextOverflowError,
    DecodeError,
    ModelClosedError,
    MTPUnavailableError,
    QueueFullError,
)

logger = logging.getLogger("llama_mtp.server")

RETRY_AFTER_S = 1
"""Seconds a client is told to wait (``Retry-After``) when the server is full."""


class APIError(Exception):
    """An error answered as an OpenAI error object with an HTTP status.

    ``type``: OpenAI's error type (``invalid_request_error``, ``authentication_error``,
    ``not_found_error``, ``unavailable_error``, ``server_error``; llama-server's
    ``exceed_context_size_error``). ``param``: the request field at fault, when one is.
    ``extra``: more keys of the error object (llama-server's ``n_ctx`` / ``n_prompt_tokens``).
    """

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", *,
                 param: str | None = None, headers: Mapping[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {...}}``."""
        return error_body(self.status, self.message, self.type, param=self.param, **self.extra)

    def response(self) -> JSONResponse:
        """The HTTP response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(status: int, message: str, type: str, *, param: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """An OpenAI error object (``code`` is the HTTP status, as llama-server sends it)."""
    return {"error": {"message": message, "type": type, "param": param, "code": status, **extra}}


def bad_request(message: str, param: str | None = None) -> APIError:
    """400 ``invalid_request_error``."""
    return APIError(400, message, "invalid_request_error", param=param)


def unavailable(message: str) -> APIError:
    """503 with ``Retry-After``: the server is full or going away; the client should retry."""
    return APIError(503, message, "unavailable_error", headers={"Retry-After": str(RETRY_AFTER_S)})


def from_exception(exc: BaseException, *, n_ctx: int | None = None) -> APIError:
    """The API error for an exception raised while serving a request.

    Bad input (``ValueError`` and the package's input errors) is a 400; a prompt that does not fit
    is llama-server's ``exceed_context_size_error``; a full queue or a closed model is a 503 with
    ``Retry-After``; anything else is a 500 (and is logged with its traceback).
    """
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextOverflowError):
        extra: dict[str, Any] = {} if n_ctx is None else {"n_ctx": n_ctx}
        return APIError(400, str(exc), "exceed_context_size_error", **extra)
    if isinstance(exc, QueueFullError):
        return unavailable(f"the server is busy: {exc}")
    if isinstance(exc, ModelClosedError):
        return unavailable(str(exc))
    if isinstance(exc, DecodeError):
        logger.error("decode error: %s", exc)
        return APIError(500, str(exc), "server_error")
    if isinstance(exc, (ValueError, TypeError, ChatTemplateError, MTPUnavailableError,
                        FileNotFoundError)):
        return bad_request(str(exc))
    logger.error("unexpected error while serving a request", exc_info=exc)
    return APIError(500, f"{type(exc).__name__}: {exc}", "server_error")
