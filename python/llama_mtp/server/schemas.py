"""Requests in, responses out: OpenAI request bodies validated into :class:`SamplingParams`,
speculators and chat arguments, and the OpenAI / llama-server response shapes.

Every field a request may carry is listed here, in one of three groups: supported, accepted and
ignored (fields that do not change the output: ``user``, ``metadata``, ...), and everything else,
which is a 400 that names the fields. A field sent as ``null`` counts as absent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..chat import ChatResult, ChatStats
from ..grammar import json_schema_to_grammar
from ..model import Model
from ..results import GenerationStats, TokenLogprob
from ..sampling import DEFAULT_SEED, SamplingParams, none_means_default, option_fields
from ..speculator import Speculator
from .errors import APIError, bad_request

MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (the operator's knobs; ``create_app(limits=...)``).

    Attributes:
        max_body_bytes: request bodies above this are refused with 413.
        max_json_depth: objects / arrays nested deeper than this are refused with 400 (a JSON
            schema or a tool's parameters rarely go past 10).
        max_prompt_tokens: prompts longer than this are refused with 400 (``None``: the
            context size decides, llama-server's ``exceed_context_size_error``). For chat, the
            tokens of the messages' text are counted (the template adds a few more).
        max_n: at most this many choices per request (``n`` times the prompts of a completion).
        max_queue: generations allowed to wait for a slot; beyond them a request gets 503 with
            ``Retry-After`` at once (``None``: no limit of the server's own; the engine's
            ``max_queue`` still applies).
    """

    max_body_bytes: int = 16 << 20
    max_json_depth: int = 64
    max_prompt_tokens: int | None = None
    max_n: int = 16
    max_queue: int | None = 64

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_json_depth < 2 or self.max_n < 1:
            raise ValueError("max_body_bytes and max_n must be >= 1, max_json_depth >= 2")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError("max_prompt_tokens must be >= 1 or None")
        if self.max_queue is not None and self.max_queue < 0:
            raise ValueError("max_queue must be >= 0 or None")


@dataclass
class Context:
    """What request parsing needs to know about the server."""

    model: Model
    sampling: SamplingParams
    speculator: Speculator
    limits: Limits
    model_name: str


# -- fields --------------------------------------------------------------------------------------
# The sampling fields and their request keys come from SamplingParams itself (option_fields: the
# one definition the CLI's flags are built from too); these are the other shared fields.
_SAMPLING_KEYS = {key: f for f in option_fields() for key in f.metadata["keys"]}
_SAMPLING_FIELDS = frozenset(_SAMPLING_KEYS) | frozenset({
    "json_schema", "response_format", "n", "stream", "stream_options", "model",
    "speculative_config", "speculative", "cache_prompt",
})
# OpenAI fields that do not change the output: accepted, not used.
_IGNORED_FIELDS = frozenset({"user", "metadata", "store", "service_tier", "prompt_cache_key",
                             "safety_identifier"})
CHAT_FIELDS = _SAMPLING_FIELDS | _IGNORED_FIELDS | frozenset({
    "messages", "max_completion_tokens", "logprobs", "top_logprobs", "tools", "tool_choice",
    "parallel_tool_calls", "chat_template_kwargs", "enable_thinking", "reasoning_budget_tokens",
    "reasoning_budget", "thinking_budget_tokens",
})
COMPLETION_FIELDS = _SAMPLING_FIELDS | _IGNORED_FIELDS | frozenset({
    "prompt", "logprobs", "echo", "suffix", "best_of",
})
_SPEC_OVERRIDES = ("type", "n_max", "n_min", "p_min")


def _present(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def check_fields(body: Mapping[str, Any], known: frozenset[str]) -> None:
    """400 naming every field this endpoint does not support."""
    unknown = sorted(k for k in body if k not in known and not k.startswith("speculative."))
    if unknown:
        raise bad_request(f"unsupported field{'s' if len(unknown) > 1 else ''}: "
                          f"{', '.join(unknown)}", param=unknown[0])


# -- scalars -------------------------------------------------------------------------------------
def _number(body: Mapping[str, Any], key: str, *, integer: bool = False,
            lo: float | None = None, hi: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"'{key}' must be a number", key)
    if integer and value != int(value):
        raise bad_request(f"'{key}' must be an integer", key)
    value = int(value) if integer else float(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise bad_request(f"'{key}' must be in {bounds}, got {value}", key)
    return value


def _bool(body: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad_request(f"'{key}' must be a boolean", key)
    return value


def _logit_bias(value: Any, model: Model) -> dict[int, float]:
    """OpenAI's ``{"token_id": bias}`` or llama-server's ``[[token_or_text, bias_or_false]]``."""
    if isinstance(value, Mapping):
        pairs: list[Any] = list(value.items())
    elif isinstance(value, list):
        pairs = value
    else:
        raise bad_request("'logit_bias' must be an object or a list of [token, bias] pairs",
                          "logit_bias")
    out: dict[int, float] = {}
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise bad_request("'logit_bias' entries must be [token, bias] pairs", "logit_bias")
        key, bias = pair
        if bias is False:
            bias = float("-inf")
        elif isinstance(bias, bool) or not isinstance(bias, (int, float)) or math.isnan(bias):
            raise bad_request("a 'logit_bias' value must be a number (or false)", "logit_bias")
        if isinstance(key, str) and not key.lstrip("-").isdigit():
            ids = model.tokenize(key)
        elif isinstance(key, (int, str)) and not isinstance(key, bool):
            ids = [int(key)]
        else:
            raise bad_request("a 'logit_bias' key must be a token id or a text", "logit_bias")
        for token in ids:
            if not 0 <= token < model.n_vocab:
                raise bad_request(f"'logit_bias' token {token} is out of range "
                                  f"[0, {model.n_vocab})", "logit_bias")
            out[token] = float(bias)
    return out


def _format(body: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The GBNF ``grammar``, or the JSON schema of ``json_schema`` (llama-server) or
    ``response_format`` (OpenAI; ``{}`` for any JSON object): at most one of them."""
    grammar, schema, fmt = body.get("grammar"), body.get("json_schema"), body.get("response_format")
    if grammar is not None and not isinstance(grammar, str):
        raise bad_request("'grammar' must be a string (GBNF)", "grammar")
    if fmt is not None:
        if not isinstance(fmt, Mapping) or not isinstance(fmt.get("type"), str):
            raise bad_request("'response_format' must be an object with a 'type'", "response_format")
        kind = fmt["type"]
        unknown = sorted(set(fmt) - {"type", "json_schema", "schema"})
        if unknown:
            raise bad_request(f"unsupported 'response_format' keys: {', '.join(unknown)}",
                              "response_format")
        if kind == "json_object":
            schema = fmt.get("schema", schema if schema is not None else {})
        elif kind == "json_schema":
            wrapper = fmt.get("json_schema")
            if not isinstance(wrapper, Mapping):
                raise bad_request("'response_format.json_schema' must be an object with a 'schema'",
                                  "response_format")
            extra = sorted(set(wrapper) - {"name", "schema", "strict", "description"})
            if extra:
                raise bad_request(f"unsupported 'response_format.json_schema' keys: "
                                  f"{', '.join(extra)}", "response_format")
            schema = wrapper.get("schema", {})
        elif kind != "text":
            raise bad_request("'response_format.type' must be 'text', 'json_object' or "
                              f"'json_schema', not {kind!r}", "response_format")
    if schema is None:
        return (grammar or None), None
    if grammar:
        raise bad_request("cannot use both a JSON schema (response_format / json_schema) and "
                          "'grammar'", "grammar")
    if not isinstance(schema, Mapping):
        raise bad_request("a JSON schema must be an object", "response_format")
    return None, dict(schema)


def schema_grammar(schema: Mapping[str, Any]) -> str:
    """The GBNF grammar of a request's JSON schema (400 naming ``response_format`` when llama.cpp's
    converter cannot use it)."""
    try:
        return json_schema_to_grammar(schema)
    except ValueError as exc:
        raise bad_request(f"the JSON schema cannot be used: {exc}", "response_format") from None


def sampling_from(body: Mapping[str, Any], ctx: Context) -> tuple[SamplingParams, dict[str, Any] | None]:
    """The request's sampling fields over the server's defaults (``grammar`` included), and the
    JSON schema the reply must follow, if one was asked for. Each :class:`SamplingParams` field
    is read from its request keys (the first one present), typed by its metadata; the values are
    validated by SamplingParams (a 400)."""
    kw: dict[str, Any] = {}
    for f in option_fields():
        key = next((k for k in f.metadata["keys"] if k in body), None)
        if key is None or f.name == "grammar":  # the grammar: with the JSON formats, below
            continue
        kind, value = f.metadata["kind"], body[key]
        if f.name == "logit_bias":
            kw[f.name] = _logit_bias(value, ctx.model)
        elif f.name == "stop":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad_request(f"'{key}' must be a string or a list of strings", key)
            kw[f.name] = [v for v in value if v]
        elif kind is bool:
            kw[f.name] = _bool(body, key)
        elif kind is int:
            hi = 0xFFFFFFFF if f.name == "seed" else None
            lo = -1 if f.name in ("seed", "max_tokens") else None
            kw[f.name] = none_means_default(f.name, _number(body, key, integer=True, lo=lo, hi=hi))
        elif kind is float:
            kw[f.name] = _number(body, key)
        elif kind is str:
            if not isinstance(value, str):
                raise bad_request(f"'{key}' must be a string", key)
            kw[f.name] = value
        else:  # a field kind this server does not know how to read
            raise bad_request(f"'{key}' is not supported", key)
    grammar, schema = _format(body)
    if grammar is not None:
        kw["grammar"] = grammar
    base = ctx.sampling
    try:
        params = replace(base, **{"stop": list(base.stop), "logit_bias": dict(base.logit_bias), **kw})
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return params, schema


def with_logprobs(params: SamplingParams, k: int) -> SamplingParams:
    """``params`` asking for the log-probabilities of the generated tokens, with ``k`` top
    alternatives each."""
    try:
        return replace(params, logprobs=k)
    except ValueError as exc:
        raise bad_request(str(exc), "logprobs") from None


def choices_of(params: SamplingParams, n: int) -> list[SamplingParams]:
    """One SamplingParams per choice: with a fixed seed, choice ``i`` uses ``seed + i`` so that the
    choices differ and the reply is still reproducible."""
    if n == 1 or params.seed == DEFAULT_SEED:
        return [params] * n
    return [replace(params, seed=(params.seed + i) % DEFAULT_SEED) for i in range(n)]


def speculator_from(body: Mapping[str, Any], default: Speculator) -> Speculator:
    """``speculative_config`` (vLLM), ``speculative`` (a dict, or false/true), or llama-server's
    flat ``speculative.n_max`` keys; dicts without a type adjust the server's speculator."""
    value = body.get("speculative_config")
    if value is None:
        value = body.get("speculative")
    flat = {k.split(".", 1)[1]: body[k] for k in body if k.startswith("speculative.")}
    if value is False:
        return Speculator.none()
    if value is True and not flat:
        return default if default.enabled else Speculator.mtp()
    if value is None or value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise bad_request("'speculative_config' must be an object (or false)", "speculative_config")
    config = {**value, **flat}
    if not config:
        return default
    try:
        if "model" in config or "model_path" in config:
            raise ValueError("a request cannot name a draft model file: start the server with it")
        if any(k in config for k in ("method", "spec_type", "type")):
            # The server's draft model (or MTP sidecar) serves requests for the same type.
            spec = Speculator.from_config({**config, "model_path": default.model_path})
            return spec if spec.type == default.type else replace(spec, model_path=None)
        unknown = set(config) - set(_SPEC_OVERRIDES)
        if unknown:
            raise ValueError(f"unsupported speculative keys: {sorted(unknown)}")
        base = default if default.enabled else Speculator.mtp()
        return replace(base, n_max=int(config.get("n_max", base.n_max)),
                       n_min=int(config.get("n_min", base.n_min)),
                       p_min=float(config.get("p_min", base.p_min)))
    except (ValueError, TypeError) as exc:
        raise bad_request(str(exc), "speculative_config") from None


def _stream_options(body: Mapping[str, Any], stream: bool) -> bool:
    """``stream_options.include_usage`` (only with ``stream: true``, as OpenAI)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise bad_request("'stream_options' is only allowed when 'stream' is true", "stream_options")
    if not isinstance(options, Mapping):
        raise bad_request("'stream_options' must be an object", "stream_options")
    unknown = sorted(set(options) - {"include_usage", "include_obfuscation"})
    if unknown:
        raise bad_request(f"unsupported 'stream_options' keys: {', '.join(unknown)}", "stream_options")
    return _bool(options, "include_usage")


def _n(body: Mapping[str, Any], ctx: Context, prompts: int = 1) -> int:
    n = _number(body, "n", integer=True, lo=1) or 1
    if n * prompts > ctx.limits.max_n:
        raise bad_request(f"at most {ctx.limits.max_n} choices per request "
                          f"(n = {n} x {prompts} prompt(s))", "n")
    return int(n)


def _check_prompt_tokens(n_tokens: int, ctx: Context) -> None:
    limit = ctx.limits.max_prompt_tokens
    if limit is not None and n_tokens > limit:
        raise APIError(400, f"the prompt has {n_tokens} tokens, more than this server's limit of "
                       f"{limit}", "exceed_context_size_error", n_prompt_tokens=n_tokens,
                       n_ctx=ctx.model.n_ctx)


# -- chat ----------------------------------------------------------------------------------------
_ROLES = ("system", "developer", "user", "assistant", "tool")


def _content(value: Any, where: str) -> str | None:
    """A message's content: a string, or a list of text parts (joined with newlines, as vLLM and
    llama.cpp do); any other part type is a 400 that names it."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise bad_request(f"'{where}' must be a string or a list of content parts", where)
    texts: list[str] = []
    for j, part in enumerate(value):
        if not isinstance(part, Mapping):
            raise bad_request(f"'{where}[{j}]' must be a content part object", where)
        kind = part.get("type")
        if kind != "text":
            raise bad_request(f"content part type {kind!r} is not supported (text only), at "
                              f"{where}[{j}]", f"{where}[{j}].type")
        if not isinstance(part.get("text"), str):
            raise bad_request(f"'{where}[{j}].text' must be a string", f"{where}[{j}].text")
        texts.append(part["text"])
    return "\n".join(texts)


def messages_from(value: Any) -> list[dict[str, Any]]:
    """Validated OpenAI messages (``developer`` becomes ``system``, content parts are joined)."""
    if not isinstance(value, list) or not value:
        raise bad_request("'messages' must be a non-empty list", "messages")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, Mapping):
            raise bad_request(f"'{where}' must be an object", where)
        role = m.get("role")
        if role not in _ROLES:
            raise bad_request(f"'{where}.role' must be one of {', '.join(_ROLES)}", f"{where}.role")
        msg = {k: v for k, v in m.items() if v is not None}
        msg["role"] = "system" if role == "developer" else role
        content = _content(m.get("content"), f"{where}.content")
        if content is None:
            if role != "assistant" or not m.get("tool_calls"):
                raise bad_request(f"'{where}.content' is missing", f"{where}.content")
            msg.pop("content", None)
        else:
            msg["content"] = content
        calls = m.get("tool_calls")
        if calls is not None:
            if role != "assistant" or not isinstance(calls, list):
                raise bad_request(f"'{where}.tool_calls' must be a list on an assistant message",
                                  f"{where}.tool_calls")
            for call in calls:
                fn = call.get("function") if isinstance(call, Mapping) else None
                if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) \
                        or not isinstance(fn.get("arguments", ""), str):
                    raise bad_request(f"'{where}.tool_calls' entries need function.name and "
                                      "function.arguments (a JSON string)", f"{where}.tool_calls")
        out.append(msg)
    return out


def _tools(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]] | None, str]:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise bad_request("'tools' must be a list", "tools")
        for t in tools:
            if not isinstance(t, Mapping) or t.get("type", "function") != "function" \
                    or not isinstance(t.get("function"), Mapping) \
                    or not isinstance(t["function"].get("name"), str):
                raise bad_request("'tools' entries must be {\"type\": \"function\", \"function\": "
                                  "{\"name\": ..., \"parameters\": ...}}", "tools")
        tools = [dict(t) for t in tools] or None
    choice = body.get("tool_choice")
    if choice is None:
        return tools, "auto"
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise bad_request("'tool_choice' must be 'auto', 'none', 'required' or a function",
                              "tool_choice")
        if choice == "required" and not tools:
            raise bad_request("'tool_choice' is 'required' but no 'tools' were given", "tool_choice")
        return tools, choice
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        chosen = [t for t in tools or [] if t["function"].get("name") == name]
        if not chosen:
            raise bad_request(f"'tool_choice' names a function not in 'tools': {name!r}", "tool_choice")
        return chosen, "required"
    raise bad_request("'tool_choice' must be a string or {\"type\": \"function\", \"function\": "
                      "{\"name\": ...}}", "tool_choice")


@dataclass
class ChatRequest:
    """A validated ``/v1/chat/completions`` request."""

    messages: list[dict[str, Any]]
    choices: list[SamplingParams]
    speculator: Speculator
    enable_thinking: bool
    reasoning_budget: int | None
    tools: list[dict[str, Any]] | None
    tool_choice: str
    stream: bool
    include_usage: bool
    json_schema: dict[str, Any] | None = None
    """The reply's JSON schema (``response_format`` / ``json_schema``): the chat template's own
    grammar makes the answer follow it after free reasoning."""
    logprobs: bool = False


def chat_request(body: Mapping[str, Any], ctx: Context) -> ChatRequest:
    """Validate a chat completion request (400 for anything wrong or unsupported)."""
    body = _present(body)
    check_fields(body, CHAT_FIELDS)
    messages = messages_from(body.get("messages"))
    if ctx.limits.max_prompt_tokens is not None:
        text = "".join(m.get("content", "") for m in messages)
        _check_prompt_tokens(len(ctx.model.tokenize(text)), ctx)
    tools, tool_choice = _tools(body)
    if body.get("parallel_tool_calls") is False:
        raise bad_request("'parallel_tool_calls': false is not supported", "parallel_tool_calls")
    # A grammar constrains the whole reply (reasoning and tool calls included); a JSON schema
    # only the answer (the template's grammar: reasoning first, then the JSON).
    params, schema = sampling_from(body, ctx)
    if schema is not None:
        schema_grammar(schema)  # an unusable schema is a 400 naming the field, before any work
    kwargs = body.get("chat_template_kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise bad_request("'chat_template_kwargs' must be an object", "chat_template_kwargs")
    unknown = sorted(set(kwargs) - {"enable_thinking"})
    if unknown:
        raise bad_request(f"unsupported 'chat_template_kwargs' keys: {', '.join(unknown)} "
                          "(only enable_thinking)", "chat_template_kwargs")
    thinking = kwargs.get("enable_thinking", body.get("enable_thinking"))
    if thinking is not None and not isinstance(thinking, bool):
        raise bad_request("'enable_thinking' must be a boolean", "chat_template_kwargs")
    budget = None
    for key in ("reasoning_budget_tokens", "reasoning_budget", "thinking_budget_tokens"):
        if (value := _number(body, key, integer=True, lo=-1)) is not None:
            budget = None if value == -1 else value
            break
    stream = _bool(body, "stream")
    logprobs = _bool(body, "logprobs")
    top = _number(body, "top_logprobs", integer=True, lo=0, hi=MAX_TOP_LOGPROBS)
    if top is not None and not logprobs:
        raise bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    if logprobs:
        params = with_logprobs(params, top or 0)
    n = _n(body, ctx)
    return ChatRequest(messages, choices_of(params, n), speculator_from(body, ctx.speculator),
                       thinking if thinking is not None else True, budget, tools, tool_choice,
                       stream, _stream_options(body, stream), schema, logprobs)


# -- completions ---------------------------------------------------------------------------------
@dataclass
class CompletionRequest:
    """A validated ``/v1/completions`` request: ``len(prompts) * n`` choices, prompt-major."""

    prompts: list[str | list[int]]
    choices: list[SamplingParams]
    speculator: Speculator
    stream: bool
    include_usage: bool
    n: int = 1
    logprobs: int | None = None
    cache_prompt: bool = True

    def prompt_of(self, index: int) -> str | list[int]:
        """The prompt of choice ``index``."""
        return self.prompts[index // self.n]


def _prompts(value: Any, ctx: Context) -> list[str | list[int]]:
    """``prompt``: a string, a list of strings, token ids, or a list of token-id lists."""
    def ids(v: list[Any]) -> list[int]:
        if not v:
            raise bad_request("the prompt is empty", "prompt")
        for t in v:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < ctx.model.n_vocab:
                raise bad_request(f"prompt token {t!r} is not a token id in [0, {ctx.model.n_vocab})",
                                  "prompt")
        return list(v)

    if isinstance(value, str):
        prompts: list[str | list[int]] = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        prompts = list(value)
    elif isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        prompts = [ids(v) for v in value]
    elif isinstance(value, list):
        prompts = [ids(value)]
    else:
        raise bad_request("'prompt' must be a string, a list of strings, a list of token ids or "
                          "a list of token-id lists", "prompt")
    for p in prompts:
        if isinstance(p, str) and not p:
            raise bad_request("the prompt is empty", "prompt")
        if ctx.limits.max_prompt_tokens is not None:
            _check_prompt_tokens(len(p) if isinstance(p, list) else
                                 len(ctx.model.tokenize(p, add_special=True, parse_special=True)), ctx)
    return prompts


def completion_request(body: Mapping[str, Any], ctx: Context) -> CompletionRequest:
    """Validate a completion request (400 for anything wrong or unsupported)."""
    body = _present(body)
    check_fields(body, COMPLETION_FIELDS)
    if "prompt" not in body:
        raise bad_request("'prompt' is missing", "prompt")
    prompts = _prompts(body["prompt"], ctx)
    if body.get("echo", False) is not False:
        raise bad_request("'echo' is not supported", "echo")
    if body.get("suffix"):
        raise bad_request("'suffix' is not supported", "suffix")
    params, schema = sampling_from(body, ctx)
    if schema is not None:  # no template here: the schema's grammar constrains the whole text
        params = replace(params, grammar=schema_grammar(schema))
    stream = _bool(body, "stream")
    n = _n(body, ctx, len(prompts))
    best_of = _number(body, "best_of", integer=True, lo=1)
    if best_of is not None and best_of != n:
        raise bad_request("'best_of' other than n is not supported", "best_of")
    logprobs = _number(body, "logprobs", integer=True, lo=0, hi=MAX_TOP_LOGPROBS)
    if logprobs is not None:
        params = with_logprobs(params, logprobs)
    per_prompt = choices_of(params, n)
    return CompletionRequest(prompts, per_prompt * len(prompts), speculator_from(body, ctx.speculator),
                             stream, _stream_options(body, stream), n, logprobs,
                             _bool(body, "cache_prompt", True))


# -- responses -----------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    """``chatcmpl-…`` / ``cmpl-…`` ids."""
    return f"{prefix}-{uuid.uuid4().hex}"


def finish_reason(reason: str, tool_calls: bool = False) -> str:
    """OpenAI's finish reason: ``tool_calls``, ``length`` or ``stop`` (eos and stop strings)."""
    if tool_calls:
        return "tool_calls"
    return "length" if reason == "length" else "stop"


def usage(stats: Sequence[GenerationStats]) -> dict[str, Any]:
    """OpenAI ``usage`` over the choices (the prompt counted once)."""
    prompt = stats[0].prompt_n + stats[0].cache_n if stats else 0
    completion = sum(s.predicted_n for s in stats)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": stats[0].cache_n if stats else 0}}


def timings(stats: Sequence[GenerationStats]) -> dict[str, Any]:
    """llama-server's ``timings`` (plus vLLM's speculative figures); with several choices, the
    sums over them (rates from the sums)."""
    if len(stats) == 1:
        return stats[0].to_dict()
    total = GenerationStats(
        prompt_n=sum(s.prompt_n for s in stats), cache_n=sum(s.cache_n for s in stats),
        prompt_ms=sum(s.prompt_ms for s in stats), predicted_n=sum(s.predicted_n for s in stats),
        predicted_ms=sum(s.predicted_ms for s in stats), draft_n=sum(s.draft_n for s in stats),
        draft_n_accepted=sum(s.draft_n_accepted for s in stats),
        num_drafts=sum(s.num_drafts for s in stats),
        accepted_per_position=[sum(v) for v in _zip_longest([s.accepted_per_position for s in stats])])
    out = total.to_dict()
    if all(isinstance(s, ChatStats) for s in stats):
        out["reasoning_chars"] = sum(s.reasoning_chars for s in stats if isinstance(s, ChatStats))
        out["content_chars"] = sum(s.content_chars for s in stats if isinstance(s, ChatStats))
    return out


def _zip_longest(lists: list[list[int]]) -> list[list[int]]:
    width = max((len(x) for x in lists), default=0)
    return [[x[i] for x in lists if i < len(x)] for i in range(width)]


def tool_calls(result: ChatResult) -> list[dict[str, Any]]:
    """OpenAI ``tool_calls`` of a reply (ids made up when the model gave none)."""
    return [{"id": c.id or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in result.tool_calls]


def message(result: ChatResult, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message of a chat completion."""
    return {"role": "assistant", "content": result.content or (None if calls else ""),
            "reasoning_content": result.reasoning_content or None, "tool_calls": calls}


def _piece(model: Model, token: int) -> tuple[str, list[int]]:
    raw = model.token_to_piece(token)
    return raw.decode("utf-8", errors="replace"), list(raw)


def chat_logprobs(model: Model, items: Sequence[TokenLogprob]) -> dict[str, Any]:
    """OpenAI chat ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}]}``."""
    content = []
    for item in items:
        text, raw = _piece(model, item.token)
        top = []
        for token, lp in item.top:
            t_text, t_raw = _piece(model, token)
            top.append({"token": t_text, "logprob": lp, "bytes": t_raw})
        content.append({"token": text, "logprob": item.logprob, "bytes": raw, "top_logprobs": top})
    return {"content": content, "refusal": None}


def completion_logprobs(model: Model, items: Sequence[TokenLogprob],
                        offset: int = 0) -> dict[str, Any]:
    """OpenAI completions ``logprobs``: tokens, token_logprobs, top_logprobs, text_offset."""
    tokens, lps, tops, offsets = [], [], [], []
    for item in items:
        text, _ = _piece(model, item.token)
        tokens.append(text)
        lps.append(item.logprob)
        tops.append({_piece(model, t)[0]: lp for t, lp in item.top})
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


@dataclass
class Envelope:
    """The fields every response object of one request shares."""

    object: str
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            self.id = new_id("chatcmpl" if self.object.startswith("chat") else "cmpl")

    def wrap(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """A response (or chunk) object around ``choices``."""
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices, **extra}


def stats_dict(stats: GenerationStats) -> dict[str, Any]:
    """``dataclasses.asdict`` of stats (for logs)."""
    return dataclasses.asdict(stats)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
