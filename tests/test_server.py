"""The OpenAI-compatible HTTP server (llama_mtp.server), called over urllib against a real model."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from llama_mtp import Model, SamplingParams
from llama_mtp.server import create_server

TIMINGS_KEYS = {"prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms",
                "predicted_per_second", "cache_n", "draft_n", "draft_n_accepted", "num_drafts",
                "mean_acceptance_length"}
HELLO = [{"role": "user", "content": "Hello there!"}]


@pytest.fixture(scope="module")
def model(chat_model_path: Any) -> Iterator[Model]:
    with Model(chat_model_path, n_ctx=1024, n_threads=1, n_threads_batch=1) as m:
        yield m


@pytest.fixture(scope="module")
def base(model: Model) -> Iterator[str]:
    server = create_server(model, "127.0.0.1", 0, model_name="test-model")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host!s}:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def call(url: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def events(url: str, body: dict[str, Any]) -> list[Any]:
    """The SSE events of a streamed request; checks the framing and the final [DONE]."""
    req = urllib.request.Request(url, data=json.dumps({**body, "stream": True}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = resp.read().decode("utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks), text
    assert blocks[-1] == "data: [DONE]"
    return [json.loads(b[len("data: "):]) for b in blocks[:-1]]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": HELLO, "temperature": 0, "max_tokens": 64, **extra}


def test_chat_completion_shape(base: str, model: Model) -> None:
    status, out = call(base + "/v1/chat/completions", chat_body())
    assert status == 200
    assert out["object"] == "chat.completion" and out["model"] == "test-model"
    assert out["id"].startswith("chatcmpl-") and isinstance(out["created"], int)
    choice = out["choices"][0]
    msg = choice["message"]
    assert set(msg) == {"role", "content", "reasoning_content", "tool_calls"}
    assert msg["role"] == "assistant" and msg["tool_calls"] == []
    ref = model.chat(HELLO, SamplingParams.greedy(64))
    assert msg["content"] == ref.content and msg["content"]
    assert (msg["reasoning_content"] or "") == ref.reasoning_content
    assert choice["finish_reason"] == "stop"
    usage, timings = out["usage"], out["timings"]
    assert usage["completion_tokens"] == timings["predicted_n"] > 0
    assert usage["prompt_tokens"] == timings["prompt_n"] + timings["cache_n"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert TIMINGS_KEYS <= set(timings)
    assert timings["content_chars"] == len(msg["content"])
    assert timings["reasoning_chars"] == len(msg["reasoning_content"] or "")


def test_chat_stream_matches_non_stream(base: str) -> None:
    _, whole = call(base + "/v1/chat/completions", chat_body())
    chunks = events(base + "/v1/chat/completions", chat_body())
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"] for c in chunks]
    content = "".join(d.get("content") or "" for d in deltas)
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    msg = whole["choices"][0]["message"]
    assert content == msg["content"]
    assert reasoning == (msg["reasoning_content"] or "")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert TIMINGS_KEYS <= set(last["timings"])


def test_thinking_off_and_length(base: str) -> None:
    status, out = call(base + "/v1/chat/completions",
                       chat_body(chat_template_kwargs={"enable_thinking": False}))
    assert status == 200
    msg = out["choices"][0]["message"]
    assert msg["content"] and msg["reasoning_content"] is None
    status, out = call(base + "/v1/chat/completions", chat_body(max_completion_tokens=3))
    assert status == 200 and out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 3


def test_reasoning_is_split_from_content(base: str) -> None:
    _, full = call(base + "/v1/chat/completions", chat_body())
    msg = full["choices"][0]["message"]
    assert msg["reasoning_content"] and msg["content"], \
        "the chat fixture's greedy reply should be a <think> block, then an answer"
    assert "</think>" not in msg["content"] + msg["reasoning_content"]
    chunks = events(base + "/v1/chat/completions", chat_body())
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert any(d.get("reasoning_content") for d in deltas) and any(d.get("content") for d in deltas)
    status, capped = call(base + "/v1/chat/completions", chat_body(reasoning_budget_tokens=2))
    assert status == 200
    assert capped["timings"]["reasoning_chars"] < full["timings"]["reasoning_chars"]


def test_speculative_per_request(base: str, model: Model) -> None:
    assert model.has_mtp  # the chat fixture has an MTP head
    _, plain = call(base + "/v1/chat/completions", chat_body())
    assert plain["timings"]["draft_n"] == 0  # the server's default: plain decoding
    spec = {"method": "mtp", "num_speculative_tokens": 2}
    _, mtp = call(base + "/v1/chat/completions", chat_body(speculative_config=spec))
    assert mtp["choices"][0]["message"] == plain["choices"][0]["message"]
    t = mtp["timings"]
    assert t["draft_n"] > 0 and t["num_drafts"] > 0 and t["mean_acceptance_length"] >= 1.0
    chunks = events(base + "/v1/chat/completions", chat_body(**{"speculative.n_max": 1}))
    assert chunks[-1]["timings"]["draft_n"] > 0


def test_completions(base: str, model: Model) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
    status, out = call(base + "/v1/completions", body)
    assert status == 200 and out["object"] == "text_completion"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length" and out["usage"]["completion_tokens"] == 8
    assert TIMINGS_KEYS <= set(out["timings"])
    assert choice["text"] == model.generate("Once upon a time", SamplingParams.greedy(8)).text
    chunks = events(base + "/v1/completions", body)
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and "timings" in chunks[-1]
    stop = choice["text"][3:7]
    _, cut = call(base + "/v1/completions", {**body, "stop": [stop]})
    assert cut["choices"][0]["text"] == choice["text"][:choice["text"].find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    ids = model.tokenize("Once upon a time", add_special=True)
    _, by_ids = call(base + "/v1/completions", {**body, "prompt": ids})
    assert by_ids["choices"][0]["text"] == choice["text"]


def test_models_and_health(base: str, model: Model) -> None:
    status, out = call(base + "/v1/models")
    assert status == 200 and out["object"] == "list"
    assert [m["id"] for m in out["data"]] == ["test-model"]
    assert out["data"][0]["meta"]["n_ctx"] == model.n_ctx
    assert call(base + "/health") == (200, {"status": "ok"})
    status, out = call(base + "/v1/chat/completions")  # a GET
    assert status == 405 and out["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path, body, status, kind", [
    ("/v1/chat/completions", None, 400, "invalid_request_error"),  # raw b"{not json"
    ("/v1/chat/completions", {}, 400, "invalid_request_error"),
    ("/v1/chat/completions", {"messages": "hi"}, 400, "invalid_request_error"),
    ("/v1/chat/completions", {"messages": HELLO, "temperature": "hot"}, 400, "invalid_request_error"),
    ("/v1/chat/completions", {"messages": HELLO, "top_p": 5}, 400, "invalid_request_error"),
    ("/v1/chat/completions", {"messages": HELLO, "stream": True, "max_tokens": -5}, 400,
     "invalid_request_error"),
    ("/v1/chat/completions", {"messages": HELLO, "speculative_config": {"bogus": 1}}, 400,
     "invalid_request_error"),
    ("/v1/chat/completions", {"messages": HELLO, "speculative_config": {"method": "mtp",
     "model": "/etc/passwd"}}, 400, "invalid_request_error"),
    ("/v1/completions", {"prompt": ""}, 400, "invalid_request_error"),
    ("/v1/completions", {"prompt": "hi", "logit_bias": {"99999999": 1}}, 400, "invalid_request_error"),
    ("/v1/completions", {"prompt": "hello " * 2000}, 400, "exceed_context_size_error"),
    ("/v1/completions", {"prompt": "hello " * 2000, "stream": True}, 400, "exceed_context_size_error"),
    ("/v1/nothing", {}, 404, "not_found_error"),
])
def test_errors(base: str, path: str, body: Any, status: int, kind: str) -> None:
    got, out = call(base + path, body, raw=b"{not json" if body is None else None)
    assert got == status
    assert out["error"]["type"] == kind and out["error"]["code"] == status
    assert isinstance(out["error"]["message"], str) and out["error"]["message"]


def test_disconnect_mid_stream_cancels(base: str, caplog: pytest.LogCaptureFixture) -> None:
    host, port = base.removeprefix("http://").split(":")
    body = {"prompt": "Once upon a time", "max_tokens": 800, "ignore_eos": True,
            "temperature": 0, "stream": True}
    _, probe = call(base + "/v1/completions", {**body, "max_tokens": 64, "stream": False})
    rate = probe["timings"]["predicted_per_second"]  # tokens/s of this model on this machine now
    with caplog.at_level(logging.INFO, logger="llama_mtp.server"):
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.fp.readline()  # the first event is on its way: generation is running
        conn.close()  # hang up mid-stream
        deadline = time.monotonic() + 30
        while not any("disconnected" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the server did not notice the disconnect"
            time.sleep(0.05)
    # one generation at a time: had the 800-token one gone on, this request would wait for it
    started = time.monotonic()
    status, out = call(base + "/v1/completions", {**body, "max_tokens": 4, "stream": False})
    waited = time.monotonic() - started
    assert status == 200 and out["usage"]["completion_tokens"] == 4
    assert waited < 0.5 * 800 / rate, f"{waited:.2f} s: the disconnected generation kept running"


def test_concurrent_requests(base: str) -> None:
    results: list[tuple[int, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(
        call(base + "/v1/chat/completions", chat_body(max_tokens=6)))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [s for s, _ in results] == [200] * 3
    assert len({json.dumps(o["choices"][0]["message"]) for _, o in results}) == 1
