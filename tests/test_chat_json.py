"""Chat with a JSON response format (``Model.chat(json_schema=...)``) and the chat template's own
grammars: llama.cpp's ``common`` builds the reply's grammar from the template's parser, so a
reasoning model thinks freely and then answers in JSON (as llama-server does)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from llama_mtp import Model, SamplingParams, _core

HELLO = [{"role": "user", "content": "Hello there!"}]
PERSON = {"type": "object", "additionalProperties": False,
          "required": ["name", "age", "member", "tier"],
          "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 12},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150},
                         "member": {"type": "boolean"}, "tier": {"enum": ["gold", "silver"]}}}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def model(chat_model_path: Path) -> Iterator[Model]:
    with Model(chat_model_path, n_ctx=2048, n_threads=1) as m:
        yield m


@pytest.fixture(scope="module")
def free(model: Model) -> str:
    """The reasoning of the reply without a format (the synthetic model's scripted thought)."""
    r = model.chat(HELLO, SamplingParams.greedy(300))
    assert r.reasoning_content and r.content and r.finish_reason == "eos"
    return r.reasoning_content


def test_template_grammar(model: Model) -> None:
    templates = _core.ChatTemplates(model._live(), "")
    msgs = json.dumps(HELLO)
    for thinking in (True, False):
        p = templates.apply(msgs, "", "auto", json.dumps(PERSON), thinking, True)
        assert p.json_format and p.grammar and not p.grammar_lazy and p.grammar_triggers == []
        # the root starts where the prompt's assistant opener starts (the generation prompt is
        # fed to the grammar first), then an optional thinking block of free text, then the JSON
        root = next(line for line in p.grammar.splitlines() if line.startswith("root ::="))
        assert root.startswith('root ::= "<|im_start|>assistant\\n" ("<think>"') and "response-format" in root
    plain = templates.apply(msgs, "", "auto", "", True, True)
    assert not plain.json_format and plain.grammar == ""
    # tools: a lazy grammar that starts at the template's tool-call marker; "required": at once
    auto = templates.apply(msgs, json.dumps(TOOLS), "auto", "", True, True)
    assert auto.grammar_lazy and auto.grammar_triggers == ["<tool_call>"] and "get_weather" in auto.grammar
    required = templates.apply(msgs, json.dumps(TOOLS), "required", "", True, True)
    assert required.grammar and not required.grammar_lazy
    assert templates.apply(msgs, json.dumps(TOOLS), "none", "", True, True).grammar == ""
    # {} is any JSON object (llama-server), not "no format"
    assert templates.apply(msgs, "", "auto", "{}", True, True).json_format


def test_thinks_freely_then_answers_in_json(model: Model, free: str) -> None:
    r = model.chat(HELLO, SamplingParams.greedy(300), json_schema=PERSON)
    assert r.reasoning_content == free  # the grammar let the reasoning through unchanged
    assert r.finish_reason == "eos"
    jsonschema.validate(json.loads(r.content), PERSON)
    off = model.chat(HELLO, SamplingParams.greedy(300), json_schema=PERSON, enable_thinking=False)
    assert off.reasoning_content == "" and off.finish_reason == "eos"
    jsonschema.validate(json.loads(off.content), PERSON)
    # a reasoning budget still ends the thinking (the forced end tag is the grammar's own)
    capped = model.chat(HELLO, SamplingParams.greedy(300), json_schema=PERSON, reasoning_budget=4)
    assert 0 < len(capped.reasoning_content) < len(free)
    jsonschema.validate(json.loads(capped.content), PERSON)


def test_streamed_sync_and_async(model: Model, free: str) -> None:
    stream = model.chat_stream(HELLO, SamplingParams.greedy(300), json_schema=PERSON)
    deltas = list(stream)
    assert stream.result is not None
    assert "".join(d.reasoning_content for d in deltas) == free
    assert "".join(d.content for d in deltas) == stream.result.content
    jsonschema.validate(json.loads(stream.result.content), PERSON)

    async def main() -> str:
        return (await model.achat(HELLO, SamplingParams.greedy(300), json_schema=PERSON)).content

    assert asyncio.run(main()) == stream.result.content


def test_any_object(model: Model) -> None:
    r = model.chat(HELLO, SamplingParams.greedy(40), json_schema={}, enable_thinking=False)
    assert r.content.lstrip().startswith("{")  # the random model may not close it in 40 tokens


def test_bad_schemas_and_grammar_conflict(model: Model) -> None:
    for bad, needle in [({"type": "string", "pattern": "^(a$"}, "cannot be used"),
                        ([1], "must be an object")]:
        with pytest.raises(ValueError, match=needle):
            model.chat(HELLO, SamplingParams.greedy(4), json_schema=bad)  # type: ignore[arg-type]
    deep: dict[str, object] = {"type": "string"}
    for _ in range(70):
        deep = {"type": "array", "items": deep}
    with pytest.raises(ValueError, match="nests deeper"):
        model.chat(HELLO, SamplingParams.greedy(4), json_schema=deep)
    with pytest.raises(ValueError, match="JSON response format"):
        model.chat(HELLO, SamplingParams(grammar='root ::= "x"', max_tokens=4), json_schema=PERSON)


def test_tool_grammar_is_lazy(model: Model) -> None:
    """With tools the template's lazy grammar waits for ``<tool_call>``: a reply without a call is
    the same as with the grammar off (tool_choice="none"), reasoning included; a grammar of the
    caller's replaces it (here one that writes a call)."""
    auto = model.chat(HELLO, SamplingParams.greedy(100), tools=TOOLS)
    none = model.chat(HELLO, SamplingParams.greedy(100), tools=TOOLS, tool_choice="none")
    assert auto.text == none.text and auto.content and auto.reasoning_content and not auto.tool_calls
    call = ('root ::= "<tool_call>\\n<function=get_weather>\\n<parameter=city>\\nParis\\n'
            '</parameter>\\n</function>\\n</tool_call>"')
    r = model.chat(HELLO, SamplingParams(grammar=call, temperature=0, max_tokens=64), tools=TOOLS,
                   enable_thinking=False)
    assert [(c.name, json.loads(c.arguments)) for c in r.tool_calls] == [("get_weather", {"city": "Paris"})]
