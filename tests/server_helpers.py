"""Helpers of the server tests: raw HTTP calls and SSE parsing (the ``openai`` client is used
as it is)."""

from __future__ import annotations

import json
from typing import Any

import httpx

TIMINGS_KEYS = {"prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms",
                "predicted_per_second", "cache_n", "draft_n", "draft_n_accepted", "num_drafts",
                "mean_acceptance_length"}
HELLO = [{"role": "user", "content": "Hello there!"}]


def chat_body(**extra: Any) -> dict[str, Any]:
    """A greedy chat request."""
    return {"model": "test-model", "messages": HELLO, "temperature": 0, "max_tokens": 64, **extra}


def call(base: str, path: str, body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None, method: str | None = None) -> tuple[int, Any]:
    """Status and JSON body of one request (POST when there is a body, else GET)."""
    content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    verb = method or ("POST" if content is not None else "GET")
    r = httpx.request(verb, base + path, content=content, timeout=120,
                      headers={"Content-Type": "application/json", **(headers or {})})
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def events(base: str, path: str, body: dict[str, Any],
           headers: dict[str, str] | None = None) -> list[Any]:
    """The SSE events of a streamed request; checks the framing and the final [DONE]."""
    with httpx.stream("POST", base + path, json={**body, "stream": True}, timeout=120,
                      headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode("utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks), text
    assert blocks[-1] == "data: [DONE]"
    return [json.loads(b[len("data: "):]) for b in blocks[:-1]]
