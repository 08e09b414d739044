"""llama_mtp.grammar: llama.cpp's JSON-schema-to-GBNF converter through the public wrapper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llama_mtp import Model, SamplingParams
from llama_mtp.grammar import MAX_SCHEMA_DEPTH, json_depth, json_object_grammar, json_schema_to_grammar

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["id", "tags", "ok"],
          "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999},
                         "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 3},
                         "ok": {"type": "boolean"}}}


def test_schema_to_grammar() -> None:
    grammar = json_schema_to_grammar(SCHEMA)
    assert "root ::=" in grammar and '"\\"tags\\""' in grammar
    assert json_schema_to_grammar(json.dumps(SCHEMA)) == grammar  # JSON text works too
    assert json_schema_to_grammar({}) == json_object_grammar()  # llama-server: {} is any object


@pytest.mark.parametrize("schema, message", [
    ("{not json", "not valid JSON"),
    ([1, 2], "must be an object"),
    (True, "must be an object"),
    ({"type": "string", "pattern": "^(a$"}, "unbalanced parentheses"),  # llama.cpp's message
    ({"type": "frob"}, "unrecognized type"),
    ({"$ref": "#/definitions/missing"}, "missing"),
])
def test_bad_schemas_are_value_errors(schema: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        json_schema_to_grammar(schema)


def test_depth_limit() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(MAX_SCHEMA_DEPTH):
        schema = {"type": "array", "items": schema}
    with pytest.raises(ValueError, match="nests deeper"):
        json_schema_to_grammar(schema)
    deep: Any = []
    for _ in range(100_000):  # counted without recursion
        deep = [deep]
    assert json_depth(deep, 64) == 65
    assert json_depth({"a": [1, {"b": 2}]}, 64) == 4


def test_generation_follows_the_schema(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_ctx=512, n_threads=1) as model:
        out = model.generate("Data:", SamplingParams.greedy(128, grammar=json_schema_to_grammar(SCHEMA)))
    assert out.finish_reason == "eos", out
    jsonschema.validate(json.loads(out.text), SCHEMA)
