"""OpenAI conformance of llama_mtp.server, with the real ``openai`` client (sync, async, streaming)
and raw HTTP (httpx), against a real model served by uvicorn on a thread."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from llama_mtp import Model, SamplingParams
from llama_mtp.server import BackgroundServer, create_app

from .server_helpers import HELLO, TIMINGS_KEYS, call, chat_body, events

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
# The synthetic model does not call tools by itself: a grammar makes it write exactly this call,
# in the template's format, so that the server's parsing and streaming of tool calls is exercised.
TOOL_CALL_GRAMMAR = ('root ::= "<tool_call>\\n<function=get_weather>\\n<parameter=city>\\nParis\\n'
                     '</parameter>\\n</function>\\n</tool_call>"')
PERSON = {"type": "object", "additionalProperties": False,
          "required": ["name", "age", "member", "tier"],
          "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 12},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150},
                         "member": {"type": "boolean"}, "tier": {"enum": ["gold", "silver"]}}}


@pytest.fixture(scope="module")
def model(chat_model_path: Any) -> Iterator[Model]:
    with Model(chat_model_path, n_ctx=2048, n_threads=1, n_threads_batch=1) as m:
        yield m


@pytest.fixture(scope="module")
def base(model: Model) -> Iterator[str]:
    with BackgroundServer(create_app(model, model_name="test-model")) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)


# -- chat through the openai client --------------------------------------------------------------
def test_chat_openai_client(client: openai.OpenAI, model: Model) -> None:
    out = client.chat.completions.create(model="test-model", messages=HELLO,  # type: ignore[arg-type]
                                         temperature=0, max_tokens=64)
    ref = model.chat(HELLO, SamplingParams.greedy(64))
    msg = out.choices[0].message
    assert out.object == "chat.completion" and out.model == "test-model" and out.id.startswith("chatcmpl-")
    assert msg.role == "assistant" and msg.content == ref.content and msg.content
    assert (msg.model_extra or {})["reasoning_content"] == ref.reasoning_content
    assert out.choices[0].finish_reason == "stop" and not msg.tool_calls
    assert out.usage is not None and out.usage.completion_tokens == ref.stats.predicted_n
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    timings = (out.model_extra or {})["timings"]
    assert TIMINGS_KEYS <= set(timings) and timings["content_chars"] == len(ref.content)


def test_chat_openai_stream_include_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="m", messages=HELLO,  # type: ignore[arg-type]
                                           temperature=0, max_tokens=64)
    chunks = list(client.chat.completions.create(
        model="m", messages=HELLO, temperature=0, max_tokens=64, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    assert reasoning == (whole.choices[0].message.model_extra or {})["reasoning_content"]
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and whole.usage is not None
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    # without include_usage: no usage chunk
    plain = list(client.chat.completions.create(model="m", messages=HELLO, temperature=0,  # type: ignore[arg-type]
                                                max_tokens=8, stream=True))
    assert all(c.choices and c.usage is None for c in plain)


def test_chat_openai_async_concurrent(base: str) -> None:
    async def main() -> list[str | None]:
        aclient = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        replies = await asyncio.gather(*(aclient.chat.completions.create(
            model="m", messages=HELLO, temperature=0, max_tokens=64) for _ in range(3)))  # type: ignore[arg-type]
        stream = await aclient.chat.completions.create(model="m", messages=HELLO, temperature=0,  # type: ignore[arg-type]
                                                       max_tokens=64, stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await aclient.close()
        return [r.choices[0].message.content for r in replies] + [streamed]

    texts = asyncio.run(main())
    assert len(set(texts)) == 1 and texts[0]


def test_chat_raw_shape_and_request_id(base: str) -> None:
    import httpx

    r = httpx.post(base + "/v1/chat/completions", json=chat_body(), timeout=120,
                   headers={"X-Request-Id": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    out = r.json()
    msg = out["choices"][0]["message"]
    assert set(msg) == {"role", "content", "reasoning_content", "tool_calls"} and msg["tool_calls"] == []
    assert out["choices"][0]["logprobs"] is None
    assert out["usage"]["prompt_tokens"] == out["timings"]["prompt_n"] + out["timings"]["cache_n"]
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == out["timings"]["cache_n"]
    assert len(httpx.get(base + "/health").headers["x-request-id"]) == 32  # made up when absent


def test_content_parts(base: str) -> None:
    joined = [{"role": "user", "content": "Hello\nthere!"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello"},
                                          {"type": "text", "text": "there!"}]}]
    _, a = call(base, "/v1/chat/completions", chat_body(messages=joined))
    _, b = call(base, "/v1/chat/completions", chat_body(messages=parts))
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    assert a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    status, err = call(base, "/v1/chat/completions", chat_body(messages=image))
    assert status == 400 and "image_url" in err["error"]["message"]
    assert err["error"]["param"] == "messages[0].content[0].type"


def test_unsupported_fields_are_named(client: openai.OpenAI, base: str) -> None:
    status, err = call(base, "/v1/chat/completions", chat_body(audio={"voice": "x"}, frobnicate=1))
    assert status == 400 and err["error"]["type"] == "invalid_request_error"
    assert "audio" in err["error"]["message"] and "frobnicate" in err["error"]["message"]
    assert err["error"]["param"] == "audio"
    with pytest.raises(openai.BadRequestError, match="modalities"):
        client.chat.completions.create(model="m", messages=HELLO, modalities=["text", "audio"])  # type: ignore[arg-type, list-item]
    # null fields count as absent; fields that do not change the output are accepted
    status, _ = call(base, "/v1/chat/completions", chat_body(tools=None, user="u1", store=False,
                                                              metadata={"a": "b"}, max_tokens=2))
    assert status == 200
    status, err = call(base, "/v1/completions", {"prompt": "x", "echo": True})
    assert status == 400 and err["error"]["param"] == "echo"


# -- sampling fields -------------------------------------------------------------------------------
def test_max_tokens_stop_seed(base: str, client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="m", messages=HELLO, temperature=0,  # type: ignore[arg-type]
                                         max_completion_tokens=3)
    assert out.choices[0].finish_reason == "length" and out.usage and out.usage.completion_tokens == 3
    _, full = call(base, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 12,
                                            "temperature": 0})
    text = full["choices"][0]["text"]
    stop = text[3:7]
    _, cut = call(base, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 12,
                                           "temperature": 0, "stop": stop})
    assert cut["choices"][0]["text"] == text[:text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    sampled = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 1.5, "top_k": 0,
               "top_p": 1.0, "min_p": 0.0, "seed": 7}
    _, s1 = call(base, "/v1/completions", sampled)
    _, s2 = call(base, "/v1/completions", sampled)
    assert s1["choices"][0]["text"] == s2["choices"][0]["text"]


def test_logit_bias(base: str, model: Model) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 1, "temperature": 0}
    _, plain = call(base, "/v1/completions", body)
    first = model.generate("Once upon a time", SamplingParams.greedy(1)).tokens[0]
    _, banned = call(base, "/v1/completions", {**body, "logit_bias": {str(first): -100}})
    assert plain["choices"][0]["text"] == model.detokenize([first])
    assert banned["choices"][0]["text"] != plain["choices"][0]["text"]
    _, listed = call(base, "/v1/completions", {**body, "logit_bias": [[first, False]]})
    assert listed["choices"][0]["text"] == banned["choices"][0]["text"]


def test_n_choices(base: str, client: openai.OpenAI) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.5, "top_k": 0,
            "top_p": 1.0, "min_p": 0.0, "seed": 11, "n": 3}
    _, a = call(base, "/v1/completions", body)
    _, b = call(base, "/v1/completions", body)
    assert [c["index"] for c in a["choices"]] == [0, 1, 2]
    assert [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]]  # reproducible
    assert a["usage"]["completion_tokens"] == 18 and a["timings"]["predicted_n"] == 18
    chunks = events(base, "/v1/completions", body)
    streamed = ["".join(c["choices"][0]["text"] for c in chunks if c["choices"][0]["index"] == i)
                for i in range(3)]
    assert streamed == [c["text"] for c in a["choices"]]
    chat = client.chat.completions.create(model="m", messages=HELLO, temperature=0, max_tokens=8, n=2)  # type: ignore[arg-type]
    assert [c.index for c in chat.choices] == [0, 1]
    assert chat.choices[0].message.content == chat.choices[1].message.content  # greedy
    status, err = call(base, "/v1/completions", {**body, "n": 17})
    assert status == 400 and err["error"]["param"] == "n"


def test_completions(base: str, client: openai.OpenAI, model: Model) -> None:
    out = client.completions.create(model="m", prompt="Once upon a time", max_tokens=8, temperature=0)
    assert out.object == "text_completion" and out.choices[0].finish_reason == "length"
    assert out.choices[0].text == model.generate("Once upon a time", SamplingParams.greedy(8)).text
    assert out.usage is not None and out.usage.completion_tokens == 8
    stream = list(client.completions.create(model="m", prompt="Once upon a time", max_tokens=8,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in stream if c.choices) == out.choices[0].text
    assert stream[-1].usage is not None and stream[-1].usage.completion_tokens == 8
    ids = model.tokenize("Once upon a time", add_special=True)
    by_ids = client.completions.create(model="m", prompt=ids, max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == out.choices[0].text
    two = client.completions.create(model="m", prompt=["Once upon a time", "Once upon a time"],
                                    max_tokens=8, temperature=0)
    assert [c.text for c in two.choices] == [out.choices[0].text] * 2
    two_ids = client.completions.create(model="m", prompt=[ids, ids], max_tokens=8, temperature=0)
    assert [c.index for c in two_ids.choices] == [0, 1]
    assert [c.text for c in two_ids.choices] == [out.choices[0].text] * 2


# -- chat features -------------------------------------------------------------------------------
def test_reasoning_and_template_kwargs(base: str) -> None:
    _, full = call(base, "/v1/chat/completions", chat_body())
    msg = full["choices"][0]["message"]
    assert msg["reasoning_content"] and msg["content"]
    assert "</think>" not in msg["content"] + msg["reasoning_content"]
    status, off = call(base, "/v1/chat/completions",
                       chat_body(chat_template_kwargs={"enable_thinking": False}))
    assert status == 200 and off["choices"][0]["message"]["reasoning_content"] is None
    assert off["choices"][0]["message"]["content"]
    status, capped = call(base, "/v1/chat/completions", chat_body(reasoning_budget_tokens=2))
    assert status == 200 and capped["timings"]["reasoning_chars"] < full["timings"]["reasoning_chars"]
    status, err = call(base, "/v1/chat/completions", chat_body(chat_template_kwargs={"x": 1}))
    assert status == 400 and "x" in err["error"]["message"]


def test_tool_calls(base: str, client: openai.OpenAI) -> None:
    body = chat_body(tools=TOOLS, grammar=TOOL_CALL_GRAMMAR,
                     chat_template_kwargs={"enable_thinking": False}, max_tokens=64)
    status, out = call(base, "/v1/chat/completions", body)
    assert status == 200, out
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (tc,) = choice["message"]["tool_calls"]
    assert tc["type"] == "function" and tc["function"]["name"] == "get_weather" and tc["id"]
    assert json.loads(tc["function"]["arguments"]) == {"city": "Paris"}
    # streamed through the openai client: the deltas add up to the same call
    stream = client.chat.completions.create(
        model="m", messages=HELLO, tools=TOOLS, temperature=0, max_tokens=64, stream=True,  # type: ignore[arg-type]
        extra_body={"grammar": TOOL_CALL_GRAMMAR, "chat_template_kwargs": {"enable_thinking": False}})
    name, args, finish = "", "", None
    for chunk in stream:
        for d in chunk.choices[0].delta.tool_calls or []:
            assert d.index == 0
            name += (d.function.name or "") if d.function else ""
            args += (d.function.arguments or "") if d.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"} and finish == "tool_calls"
    for bad, param in [({"tool_choice": "sometimes"}, "tool_choice"),
                       ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
                       ({"tools": [{"type": "retrieval"}]}, "tools")]:
        status, err = call(base, "/v1/chat/completions", chat_body(**{"tools": TOOLS, **bad}))
        assert status == 400 and err["error"]["param"] == param, err


def test_response_format_json_schema(client: openai.OpenAI, base: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    free = client.chat.completions.create(model="m", messages=HELLO, temperature=0, max_tokens=300)  # type: ignore[arg-type]
    free_reasoning = (free.choices[0].message.model_extra or {})["reasoning_content"]
    for thinking in (True, False):
        out = client.chat.completions.create(
            model="m", messages=HELLO, temperature=0, max_tokens=300, response_format=fmt,  # type: ignore[arg-type]
            extra_body={"chat_template_kwargs": {"enable_thinking": thinking}})
        msg = out.choices[0].message
        assert out.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(msg.content or ""), PERSON)
        # the template's grammar leaves the reasoning free: the model thinks as it would unasked
        reasoning = (msg.model_extra or {})["reasoning_content"]
        assert reasoning == (free_reasoning if thinking else None) and free_reasoning
    # streamed, thinking on by default: the deltas add up to the same reasoning and JSON
    chunks = events(base, "/v1/chat/completions", chat_body(max_tokens=300, response_format=fmt))
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert reasoning == free_reasoning
    jsonschema.validate(json.loads(content), PERSON)
    # llama-server's json_schema field, on /v1/completions too (no template: the whole text)
    _, comp = call(base, "/v1/completions", {"prompt": "Person:", "max_tokens": 200, "temperature": 0,
                                            "json_schema": PERSON})
    jsonschema.validate(json.loads(comp["choices"][0]["text"]), PERSON)
    status, err = call(base, "/v1/chat/completions", chat_body(
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": {
            "type": "string", "pattern": "^(a$"}}}))
    assert status == 400 and err["error"]["param"] == "response_format"
    status, err = call(base, "/v1/chat/completions", chat_body(response_format=fmt, grammar='root ::= "x"'))
    assert status == 400 and err["error"]["param"] == "grammar"


def test_response_format_json_object(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="m", messages=HELLO, temperature=0, max_tokens=300,  # type: ignore[arg-type]
                                         response_format={"type": "json_object"})
    msg = out.choices[0].message
    assert (msg.model_extra or {})["reasoning_content"]  # thought first, unconstrained
    text = msg.content or ""
    assert text.lstrip().startswith("{")
    if out.choices[0].finish_reason == "stop":  # the random model may not close the object
        assert isinstance(json.loads(text), dict)


def test_speculative_config_and_timings(base: str, model: Model) -> None:
    assert model.has_mtp
    _, plain = call(base, "/v1/chat/completions", chat_body())
    assert plain["timings"]["draft_n"] == 0  # the server's default: plain decoding
    spec = {"method": "mtp", "num_speculative_tokens": 2}
    _, mtp = call(base, "/v1/chat/completions", chat_body(speculative_config=spec))
    assert mtp["choices"][0]["message"] == plain["choices"][0]["message"]
    t = mtp["timings"]
    assert t["draft_n"] > 0 and t["num_drafts"] > 0 and t["mean_acceptance_length"] >= 1.0
    assert TIMINGS_KEYS <= set(t)
    chunks = events(base, "/v1/chat/completions", chat_body(**{"speculative.n_max": 1}))
    final = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert final[0]["timings"]["draft_n"] > 0


def test_models_and_health(base: str, model: Model) -> None:
    status, out = call(base, "/v1/models")
    assert status == 200 and out["object"] == "list" and [m["id"] for m in out["data"]] == ["test-model"]
    meta = out["data"][0]["meta"]
    assert meta["n_ctx"] == model.n_ctx and meta["n_parallel"] == model.n_parallel == 1
    assert meta["has_mtp"] and meta["speculative_type"] == "none" and meta["speculative_n_max"] == 0
    assert call(base, "/health") == (200, {"status": "ok"})
    assert call(base, "/v1/health") == (200, {"status": "ok"})
    status, err = call(base, "/v1/chat/completions")  # a GET
    assert status == 405 and err["error"]["type"] == "invalid_request_error"


# -- logprobs ------------------------------------------------------------------------------------
def test_completion_logprobs_top1_is_greedy(base: str, model: Model) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "logprobs": 3}
    for extra in ({}, {"speculative_config": {"method": "mtp", "num_speculative_tokens": 2}}):
        status, out = call(base, "/v1/completions", {**body, **extra})
        assert status == 200, out
        lp = out["choices"][0]["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 8
        assert "".join(lp["tokens"]) == out["choices"][0]["text"]
        for tok, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
            assert len(top) == 3 and value <= 0.0
            best = max(top, key=top.get)
            assert best == tok and top[best] == pytest.approx(value, abs=1e-4)


def test_chat_logprobs_top1_is_greedy(client: openai.OpenAI, model: Model) -> None:
    out = client.chat.completions.create(model="m", messages=HELLO, temperature=0, max_tokens=16,  # type: ignore[arg-type]
                                         logprobs=True, top_logprobs=2)
    content = out.choices[0].logprobs.content if out.choices[0].logprobs else None
    assert content and out.usage and len(content) == out.usage.completion_tokens == 16
    # the reply's tokens, reasoning and answer alike (the synthetic reply ends its reasoning early)
    text = model.chat(HELLO, SamplingParams.greedy(16)).text
    assert "".join(item.token for item in content) == text
    for item in content:
        assert len(item.top_logprobs) == 2 and item.logprob <= 0.0
        assert item.top_logprobs[0].token == item.token
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-4)
    plain = client.chat.completions.create(model="m", messages=HELLO, temperature=0, max_tokens=4)  # type: ignore[arg-type]
    assert plain.choices[0].logprobs is None  # only when asked for


def test_chat_logprobs_streamed(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="m", messages=HELLO, temperature=0, max_tokens=40,  # type: ignore[arg-type]
                                           logprobs=True, top_logprobs=1)
    assert whole.choices[0].logprobs and whole.choices[0].logprobs.content
    expected = [(i.token, i.logprob) for i in whole.choices[0].logprobs.content]
    stream = client.chat.completions.create(model="m", messages=HELLO, temperature=0, max_tokens=40,  # type: ignore[arg-type]
                                            logprobs=True, top_logprobs=1, stream=True,
                                            extra_body={"speculative_config": {"method": "mtp",
                                                                               "num_speculative_tokens": 2}})
    streamed: list[tuple[str, float]] = []
    for chunk in stream:
        lp = chunk.choices[0].logprobs if chunk.choices else None
        if lp and lp.content:
            delta = chunk.choices[0].delta
            assert delta.content or (delta.model_extra or {}).get("reasoning_content")  # with its text
            streamed += [(i.token, i.logprob) for i in lp.content]
    # every token once, in order, the same figures with MTP as without (verification rows)
    assert [t for t, _ in streamed] == [t for t, _ in expected]
    assert [v for _, v in streamed] == pytest.approx([v for _, v in expected], abs=1e-4)


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body, status, kind, param", [
    ("/v1/chat/completions", None, 400, "invalid_request_error", None),  # raw b"{not json"
    ("/v1/chat/completions", {}, 400, "invalid_request_error", "messages"),
    ("/v1/chat/completions", {"messages": "hi"}, 400, "invalid_request_error", "messages"),
    ("/v1/chat/completions", {"messages": [{"content": "x"}]}, 400, "invalid_request_error",
     "messages[0].role"),
    ("/v1/chat/completions", {"messages": HELLO, "temperature": "hot"}, 400,
     "invalid_request_error", "temperature"),
    ("/v1/chat/completions", {"messages": HELLO, "top_p": 5}, 400, "invalid_request_error", None),
    ("/v1/chat/completions", {"messages": HELLO, "stream": True, "max_tokens": -5}, 400,
     "invalid_request_error", "max_tokens"),
    ("/v1/chat/completions", {"messages": HELLO, "stream_options": {"include_usage": True}}, 400,
     "invalid_request_error", "stream_options"),
    ("/v1/chat/completions", {"messages": HELLO, "top_logprobs": 2}, 400, "invalid_request_error",
     "top_logprobs"),
    ("/v1/chat/completions", {"messages": HELLO, "response_format": {"type": "yaml"}}, 400,
     "invalid_request_error", "response_format"),
    ("/v1/chat/completions", {"messages": HELLO, "speculative_config": {"bogus": 1}}, 400,
     "invalid_request_error", "speculative_config"),
    ("/v1/chat/completions", {"messages": HELLO, "speculative_config": {"method": "mtp",
     "model": "/etc/passwd"}}, 400, "invalid_request_error", "speculative_config"),
    ("/v1/completions", {"prompt": ""}, 400, "invalid_request_error", "prompt"),
    ("/v1/completions", {"prompt": [1, -2]}, 400, "invalid_request_error", "prompt"),
    ("/v1/completions", {"prompt": "hi", "logit_bias": {"99999999": 1}}, 400,
     "invalid_request_error", "logit_bias"),
    ("/v1/completions", {"prompt": "hello " * 3000}, 400, "exceed_context_size_error", None),
    ("/v1/completions", {"prompt": "hello " * 3000, "stream": True}, 400,
     "exceed_context_size_error", None),
    ("/v1/nothing", {}, 404, "not_found_error", None),
])
def test_errors(base: str, path: str, body: Any, status: int, kind: str, param: str | None) -> None:
    got, out = call(base, path, body, raw=b"{not json" if body is None else None)
    assert got == status, out
    err = out["error"]
    assert err["type"] == kind and err["code"] == status and err["message"]
    if param is not None:
        assert err["param"] == param
