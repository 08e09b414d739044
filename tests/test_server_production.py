"""What running llama_mtp.server in production relies on: API keys, /metrics, body / JSON /
prompt limits, back-pressure (503 + Retry-After), clients that hang up, graceful shutdown,
access log with request ids, mounting under a prefix, and ``llama-mtp serve``."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llama_mtp import Model, SamplingParams
from llama_mtp.server import BackgroundServer, Limits, create_app
from llama_mtp.server.auth import APIKeyMiddleware, parse_keys

from .server_helpers import HELLO, call, chat_body, events

LONG = {"prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": True, "temperature": 0}


@pytest.fixture(scope="module")
def model(chat_model_path: Any) -> Iterator[Model]:
    with Model(chat_model_path, n_ctx=4096, n_threads=1, n_threads_batch=1) as m:
        yield m


@pytest.fixture(scope="module")
def base(model: Model) -> Iterator[str]:
    with BackgroundServer(create_app(model, model_name="test-model")) as srv:
        yield srv.url


def metric(text: str, name: str) -> float:
    m = re.search(rf"^llamacpp:{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics:\n{text}"
    return float(m.group(1))


def open_stream(base: str, body: dict[str, Any], path: str = "/v1/completions") -> socket.socket:
    """A raw socket with a streaming request sent and its first SSE event read."""
    host, port = base.removeprefix("http://").split(":")
    data = json.dumps({**body, "stream": True}).encode()
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    got = b""
    while b"data: " not in got:
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got
    return sock


# -- API keys --------------------------------------------------------------------------------------
def test_api_keys(model: Model) -> None:
    assert parse_keys(["k1,k2", " k3 "]) == ["k1", "k2", "k3"]
    with BackgroundServer(create_app(model, api_key="k1,k2")) as srv:
        status, err = call(srv.url, "/v1/models")
        assert status == 401 and err["error"]["type"] == "authentication_error"
        assert err["error"]["code"] == 401
        assert call(srv.url, "/v1/models", headers={"Authorization": "Bearer nope"})[0] == 401
        assert call(srv.url, "/v1/models", headers={"Authorization": "Basic k1"})[0] == 401
        assert call(srv.url, "/v1/models", headers={"Authorization": "Bearer k2"})[0] == 200
        assert call(srv.url, "/v1/models", headers={"X-Api-Key": "k1"})[0] == 200
        assert call(srv.url, "/metrics")[0] == 401
        assert call(srv.url, "/health") == (200, {"status": "ok"})  # public, as llama-server
        assert call(srv.url, "/v1/nothing")[0] == 401  # unknown paths do not leak either
        ok = openai.OpenAI(base_url=srv.url + "/v1", api_key="k1", max_retries=0)
        assert ok.chat.completions.create(model="m", messages=HELLO, max_tokens=2).choices  # type: ignore[arg-type]
        bad = openai.OpenAI(base_url=srv.url + "/v1", api_key="k9", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="m", messages=HELLO, max_tokens=2)  # type: ignore[arg-type]


def test_api_key_comparison_is_constant_time() -> None:
    """Every key is compared with hmac.compare_digest, none skipped (no early exit)."""
    import hmac
    from unittest import mock

    mw = APIKeyMiddleware(lambda s, r, c: None, ["alpha", "beta", "gamma"])  # type: ignore[arg-type, return-value]
    with mock.patch.object(hmac, "compare_digest", wraps=hmac.compare_digest) as cmp:
        assert mw.valid(b"alpha")
        assert cmp.call_count == 3
        assert not mw.valid(b"alphx") and not mw.valid(None)


# -- metrics ---------------------------------------------------------------------------------------
def test_metrics(base: str) -> None:
    before = httpx.get(base + "/metrics").text
    _, out = call(base, "/v1/chat/completions", chat_body(
        speculative_config={"method": "mtp", "num_speculative_tokens": 2}))
    r = httpx.get(base + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ("prompt_tokens_total", "prompt_seconds_total", "tokens_predicted_total",
                 "tokens_predicted_seconds_total", "requests_processing", "requests_deferred",
                 "spec_decode_num_drafts_total", "spec_decode_num_draft_tokens_total",
                 "spec_decode_num_accepted_tokens_total"):
        assert f"# TYPE llamacpp:{name} " in text
    t = out["timings"]
    assert metric(text, "tokens_predicted_total") - metric(before, "tokens_predicted_total") \
        == out["usage"]["completion_tokens"]
    assert metric(text, "spec_decode_num_drafts_total") - metric(before, "spec_decode_num_drafts_total") \
        == t["num_drafts"]
    assert metric(text, "spec_decode_num_draft_tokens_total") \
        - metric(before, "spec_decode_num_draft_tokens_total") == t["draft_n"]
    per_pos = re.findall(r'^llamacpp:spec_decode_num_accepted_tokens_per_pos_total\{position="(\d+)"\} (\S+)$',
                         text, re.M)
    assert [int(p) for p, _ in per_pos] == list(range(len(per_pos))) and per_pos
    assert sum(float(v) for _, v in per_pos) == metric(text, "spec_decode_num_accepted_tokens_total")
    assert metric(text, "requests_processing") == 0 and metric(text, "requests_deferred") == 0


def test_metrics_are_the_engines(model: Model) -> None:
    with BackgroundServer(create_app(model)) as srv:
        call(srv.url, "/v1/completions", {"prompt": "Once", "max_tokens": 4})
        text = httpx.get(srv.url + "/metrics").text
        m = model.metrics()  # idle, so the same figures as the server's
        for name, value in [("n_decode_total", m.n_decode_total), ("kv_cache_tokens", m.kv_cache_tokens),
                            ("kv_cache_usage_ratio", m.kv_cache_usage_ratio),
                            ("n_busy_slots_per_decode", m.n_busy_slots_per_decode),
                            ("tokens_predicted_total", m.tokens_predicted_total),
                            ("requests_finished_total", m.requests_finished_total),
                            ("n_parallel", m.n_parallel)]:
            assert f"# TYPE llamacpp:{name} " in text
            assert metric(text, name) == pytest.approx(value), name
        assert m.tokens_predicted_total >= 4 and m.n_decode_total > 0 and m.kv_cache_tokens > 0


# -- limits ----------------------------------------------------------------------------------------
def test_body_limit(model: Model) -> None:
    with BackgroundServer(create_app(model, limits=Limits(max_body_bytes=2048))) as srv:
        big = chat_body(messages=[{"role": "user", "content": "x" * 4000}])
        status, err = call(srv.url, "/v1/chat/completions", big)
        assert status == 413 and err["error"]["type"] == "invalid_request_error"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            data = json.dumps(big).encode()
            for i in range(0, len(data), 512):
                yield data[i:i + 512]

        r = httpx.post(srv.url + "/v1/chat/completions", content=chunks(), timeout=60)
        assert r.status_code == 413
        assert call(srv.url, "/v1/chat/completions", chat_body(max_tokens=2))[0] == 200


@pytest.mark.parametrize("raw, needle", [
    (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests deeper"),
    (b'{"messages": ' + b"[" * 100_000, "nests deeper"),  # and unterminated
    (b'{"messages": ' + b"[" * 200 + b"]" * 200 + b"}", "nests deeper"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', "NaN"),
    (b"[1, 2]", "JSON object"),
    (b'{"messages": "\xff\xfe"}', "invalid JSON"),
    (b"", "invalid JSON"),
])
def test_malformed_and_deeply_nested_json(base: str, raw: bytes, needle: str) -> None:
    status, err = call(base, "/v1/chat/completions", raw=raw)
    assert status == 400 and err["error"]["type"] == "invalid_request_error"
    assert needle in err["error"]["message"]
    assert call(base, "/health") == (200, {"status": "ok"})  # the server stays up
    assert call(base, "/v1/chat/completions", chat_body(max_tokens=2))[0] == 200


def test_deep_json_schema_is_refused(base: str) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(70):
        schema = {"type": "array", "items": schema}
    status, err = call(base, "/v1/completions", {"prompt": "x", "json_schema": schema})
    assert status == 400 and "nests deeper" in err["error"]["message"]  # 72 levels > 64


def test_prompt_limit(model: Model) -> None:
    with BackgroundServer(create_app(model, limits=Limits(max_prompt_tokens=8))) as srv:
        status, err = call(srv.url, "/v1/completions", {"prompt": "one two three four five six "
                                                        "seven eight nine ten eleven"})
        assert status == 400 and err["error"]["type"] == "exceed_context_size_error"
        status, err = call(srv.url, "/v1/chat/completions", chat_body(
            messages=[{"role": "user", "content": "word " * 20}]))
        assert status == 400 and err["error"]["type"] == "exceed_context_size_error"
        assert call(srv.url, "/v1/completions", {"prompt": "Once", "max_tokens": 2})[0] == 200


# -- back-pressure ---------------------------------------------------------------------------------
def test_queue_full_is_503_with_retry_after(model: Model) -> None:
    with BackgroundServer(create_app(model, limits=Limits(max_queue=0))) as srv:
        sock = open_stream(srv.url, LONG)  # holds the one slot
        try:
            r = httpx.post(srv.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=60)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "unavailable_error"
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key="-", max_retries=0)
            with pytest.raises(openai.APIStatusError) as info:
                client.completions.create(model="m", prompt="x", max_tokens=2)
            assert info.value.status_code == 503
            text = httpx.get(srv.url + "/metrics").text
            assert metric(text, "requests_processing") == 1 and metric(text, "requests_rejected_total") == 2
        finally:
            sock.close()
        deadline = time.monotonic() + 30
        while call(srv.url, "/v1/completions", {"prompt": "x", "max_tokens": 2})[0] != 200:
            assert time.monotonic() < deadline, "the slot was not given back"
            time.sleep(0.05)
    with BackgroundServer(create_app(model, limits=Limits(max_queue=1))) as srv:
        status, _ = call(srv.url, "/v1/completions", {"prompt": "x", "max_tokens": 2, "n": 3})
        assert status == 503  # three generations do not fit in 1 slot + 1 queued


def test_engine_queue_full_is_503(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_ctx=4096, n_threads=1, n_parallel=1, max_queue=1) as small:
        # no limit of the server's own: the engine's bounded queue answers
        with BackgroundServer(create_app(small, limits=Limits(max_queue=None))) as srv:
            running = open_stream(srv.url, LONG)  # the one slot
            waiting = socket.create_connection(running.getpeername()[:2], timeout=60)
            data = json.dumps({**LONG, "stream": True}).encode()
            waiting.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            f"Content-Length: {len(data)}\r\n\r\n".encode() + data)  # the one queued
            try:
                deadline = time.monotonic() + 30
                while small.metrics().requests_deferred < 1:
                    assert time.monotonic() < deadline, "the second request was not queued"
                    time.sleep(0.02)
                r = httpx.post(srv.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2},
                               timeout=60)
                assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
                assert r.json()["error"]["type"] == "unavailable_error"
            finally:
                running.close()
                waiting.close()


# -- clients that hang up --------------------------------------------------------------------------
def _time_to_answer(base: str) -> float:
    t0 = time.monotonic()
    status, out = call(base, "/v1/completions", {"prompt": "Once", "max_tokens": 4, "temperature": 0})
    assert status == 200 and out["usage"]["completion_tokens"] == 4
    return time.monotonic() - t0


def test_disconnect_mid_stream_frees_the_slot(base: str, model: Model,
                                              caplog: pytest.LogCaptureFixture) -> None:
    # Uncancelled, the 3000 tokens would hold the slot for seconds (~2 ms a token here); the next
    # request can only start once the slot is free.
    assert LONG["max_tokens"] + 16 < model.n_ctx  # type: ignore[operator]
    with caplog.at_level(logging.INFO, logger="llama_mtp.server"):
        for path, body in [("/v1/completions", LONG),
                           ("/v1/chat/completions", chat_body(max_tokens=3000, ignore_eos=True))]:
            before = metric(httpx.get(base + "/metrics").text, "tokens_predicted_total")
            sock = open_stream(base, body, path)
            sock.close()  # hang up mid-stream
            waited = _time_to_answer(base)
            assert waited < 3.0, f"the cancelled generation held the slot for {waited:.1f} s"
            if path == "/v1/completions":  # a cancelled completion's tokens are counted
                deadline = time.monotonic() + 10
                while (generated := metric(httpx.get(base + "/metrics").text,
                                           "tokens_predicted_total") - before - 4) <= 0:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                assert 0 < generated < 600, f"{generated} tokens generated after the client left"
    assert any("disconnected mid-stream" in r.getMessage() for r in caplog.records)


def test_disconnect_while_waiting_for_a_whole_reply(base: str) -> None:
    host, port = base.removeprefix("http://").split(":")
    data = json.dumps(LONG).encode()
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    time.sleep(0.5)  # generating
    sock.close()
    assert _time_to_answer(base) < 3.0


# -- graceful shutdown -----------------------------------------------------------------------------
def test_graceful_shutdown_cancels_in_flight(model: Model) -> None:
    app = create_app(model)
    srv = BackgroundServer(app, shutdown_timeout=1.0)
    received: list[bytes] = []
    before = model.metrics()

    def client() -> None:
        try:
            with httpx.stream("POST", srv.url + "/v1/completions", json={**LONG, "stream": True},
                              timeout=60) as r:
                for chunk in r.iter_raw():
                    received.append(chunk)
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=client)
    t.start()
    while not received:
        time.sleep(0.01)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 15
    t.join(30)
    assert not t.is_alive()
    assert b"the server is shutting down" in b"".join(received)  # told in-band, stream ended
    assert len(app.state.llama_mtp.engine.inflight) == 0  # every stream was closed
    # the engine's request ended early: cancelled, not run to the end (the engine counts a
    # request's tokens when it finishes)
    deadline = time.monotonic() + 10
    while model.metrics().requests_finished_total == before.requests_finished_total:
        assert time.monotonic() < deadline, "the engine's request did not end"
        time.sleep(0.02)
    after = model.metrics()
    assert after.tokens_predicted_total - before.tokens_predicted_total < 3000
    assert after.requests_processing == 0
    assert model.generate("Once", SamplingParams.greedy(2)).tokens


def test_serve_cli_stops_cleanly_while_a_client_streams(tiny_model_path: Path) -> None:
    """``llama-mtp serve`` gets SIGTERM while a client streams: exit status 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_mtp", "serve", "-m", str(tiny_model_path),
                             "--port", str(port), "-t", "1", "-c", "4096", "--shutdown-timeout", "1",
                             "--api-key", "secret"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert call(base, "/v1/models")[0] == 401
        host_data = json.dumps({**LONG, "stream": True}).encode()
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(host_data)}\r\n\r\n".encode()
                     + host_data)
        assert b"data: " in sock.recv(65536) or b"data: " in sock.recv(65536)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        sock.close()
        assert b"the server is shutting down" in rest and rest.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert rc == 0, out
        assert re.search(r'"POST /v1/completions" 200 .* request_id=', out), out  # access log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_cli_without_the_extra(tiny_model_path: Path) -> None:
    code = ("import sys; sys.modules['uvicorn'] = None; from llama_mtp.cli import main; "
            f"sys.exit(main(['serve', '-m', {str(tiny_model_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "pip install 'llama-mtp[server]'" in r.stderr


# -- logging, request ids --------------------------------------------------------------------------
def test_access_log_with_request_ids(base: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="llama_mtp.server.access"):
        r = httpx.get(base + "/v1/models", headers={"X-Request-Id": "req-7.a:b"})
        assert r.headers["x-request-id"] == "req-7.a:b"
        r2 = httpx.get(base + "/v1/models", headers={"X-Request-Id": "bad id with spaces"})
        made = r2.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        time.sleep(0.1)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "llama_mtp.server.access"]
    assert any('"GET /v1/models" 200' in line and "request_id=req-7.a:b" in line for line in lines)
    assert any(f"request_id={made}" in line for line in lines)


# -- mounting ----------------------------------------------------------------------------------------
def test_mounted_under_a_prefix(model: Model) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("my app")

    llm = create_app(model, api_key="k")
    outer = Starlette(routes=[Route("/", home), Mount("/llm", app=llm)])
    with BackgroundServer(outer) as srv:
        assert httpx.get(srv.url + "/").text == "my app"  # the user's own route, no key needed
        assert call(srv.url, "/llm/health") == (200, {"status": "ok"})
        assert call(srv.url, "/llm/v1/models")[0] == 401
        client = openai.OpenAI(base_url=srv.url + "/llm/v1", api_key="k", max_retries=0)
        out = client.chat.completions.create(model="m", messages=HELLO, temperature=0, max_tokens=64)  # type: ignore[arg-type]
        assert out.choices[0].message.content
        chunks = events(srv.url, "/llm/v1/completions", {"prompt": "Once", "max_tokens": 4},
                        headers={"Authorization": "Bearer k"})
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert call(srv.url, "/llm/v1/nothing", headers={"Authorization": "Bearer k"})[0] == 404


def test_shutdown_of_a_mounted_app(model: Model) -> None:
    """Mounted apps get no lifespan: ``app.state.llama_mtp.shutdown()`` ends their streams."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.routing import Mount

    llm = create_app(model)
    with BackgroundServer(Starlette(routes=[Mount("/llm", app=llm)])) as srv:
        sock = open_stream(srv.url, LONG, "/llm/v1/completions")
        t0 = time.monotonic()
        asyncio.run(llm.state.llama_mtp.shutdown())
        sock.settimeout(30)
        rest = b""
        while b"data: [DONE]" not in rest:
            chunk = sock.recv(65536)
            assert chunk, rest
            rest += chunk
        sock.close()
        assert time.monotonic() - t0 < 10  # ended, not run to its 3000 tokens
        status, err = call(srv.url, "/llm/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert status == 503 and err["error"]["type"] == "unavailable_error"
        assert call(srv.url, "/llm/health")[0] == 503


def test_mounted_in_fastapi(model: Model) -> None:
    import fastapi  # the test extra installs it

    outer = fastapi.FastAPI()
    outer.mount("/llm", create_app(model))
    with BackgroundServer(outer) as srv:
        client = openai.OpenAI(base_url=srv.url + "/llm/v1", api_key="-", max_retries=0)
        assert client.completions.create(model="m", prompt="Once", max_tokens=3).choices[0].text
        assert httpx.get(srv.url + "/docs").status_code == 200  # FastAPI's own routes still there


def test_environment_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_mtp.server.auth import keys_from_env

    monkeypatch.setenv("LLAMA_API_KEY", "a,b")
    assert keys_from_env() == ["a", "b"]
    monkeypatch.delenv("LLAMA_API_KEY")
    assert keys_from_env() == []
    assert os.environ.get("LLAMA_API_KEY") is None
