"""Grammars for structured output: JSON schema -> GBNF by llama.cpp's ``common`` converter.

>>> from llama_mtp import SamplingParams
>>> from llama_mtp.grammar import json_schema_to_grammar
>>> g = json_schema_to_grammar({"type": "object", "properties": {"ok": {"type": "boolean"}},
...                             "required": ["ok"], "additionalProperties": False})
>>> params = SamplingParams(grammar=g)        # the reply is a JSON object with one boolean

The conversion is llama.cpp's own (``common/json-schema-to-grammar``, the one llama-server uses
for ``response_format`` and ``json_schema``), so the supported subset of JSON Schema is llama.cpp's:
types, ``properties`` / ``required`` / ``additionalProperties``, ``items`` / ``prefixItems`` /
``minItems`` / ``maxItems``, ``enum`` / ``const``, ``anyOf`` / ``oneOf`` / ``allOf``, local
``$ref``, string ``minLength`` / ``maxLength`` / ``pattern`` / ``format`` (date, time,
date-time, uuid), integer ``minimum`` / ``maximum``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import _core

__all__ = ["json_schema_to_grammar", "json_object_grammar", "schema_json", "MAX_SCHEMA_DEPTH", "json_depth"]

MAX_SCHEMA_DEPTH = 64
"""Deepest nesting of objects / arrays accepted in a schema (the converter recurses in C++)."""


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value (``1`` for a scalar), counted without recursion.

    Stops counting once ``limit`` is exceeded and returns ``limit + 1``, so the cost is bounded
    by the size of the value, whatever its shape.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return limit + 1
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def schema_json(schema: Mapping[str, Any] | str) -> str:
    """``schema`` checked (an object, at most :data:`MAX_SCHEMA_DEPTH` levels deep) and written as
    JSON text for llama.cpp; an empty schema ``{}`` means any JSON object, as in llama-server.
    Raises ``ValueError``."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"the JSON schema is not valid JSON: {exc}") from None
    if not isinstance(schema, Mapping):
        raise ValueError(f"a JSON schema must be an object, not {type(schema).__name__}")
    if json_depth(schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"the JSON schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
    return json.dumps(schema or {"type": "object"})


def json_schema_to_grammar(schema: Mapping[str, Any] | str) -> str:
    """GBNF grammar accepting exactly the JSON documents that validate against ``schema``.

    ``schema``: a JSON schema as a dict, or as JSON text. An empty schema ``{}`` means any JSON
    object, as in llama-server.

    Raises ``ValueError`` for a schema that is not valid JSON, nests deeper than
    :data:`MAX_SCHEMA_DEPTH`, or uses what llama.cpp's converter does not support (the message
    is llama.cpp's).
    """
    return str(_core.json_schema_to_grammar(schema_json(schema)))


def json_object_grammar() -> str:
    """GBNF grammar for any JSON object (OpenAI's ``response_format: {"type": "json_object"}``)."""
    return json_schema_to_grammar({"type": "object"})
