"""Chat on top of generation: the GGUF's own chat template applied, the reply split into visible
answer, hidden reasoning (``<think>``) and tool calls, all by llama.cpp's ``common`` chat code."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Union

from . import _core
from .grammar import schema_json
from .results import FinishReason, GenerationChunk, GenerationOutput, GenerationStats, TokenLogprob
from .sampling import SamplingParams
from .streaming import AsyncGenerationStream, GenerationStream

Tokenizer = Callable[[str], list[int]]
"""Text to token ids, special tokens parsed (``Model.tokenize(text, parse_special=True)``)."""


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for (OpenAI shape: ``arguments`` is JSON text)."""

    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn (OpenAI message fields)."""

    role: str
    content: str = ""
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI-format dict."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning_content:
            out["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.name:
            out["name"] = self.name
        return out


MessageLike = Union[ChatMessage, Mapping[str, Any]]


@dataclass(frozen=True)
class ChatStats(GenerationStats):
    """Generation stats plus how the reply splits: hidden reasoning vs visible answer."""

    reasoning_chars: int = 0
    content_chars: int = 0

    def to_dict(self) -> dict[str, Any]:
        """All figures, for JSON output."""
        out = super().to_dict()
        out.update(reasoning_chars=self.reasoning_chars, content_chars=self.content_chars)
        return out


@dataclass(frozen=True)
class ChatResult:
    """The reply of :meth:`llama_mtp.Model.chat`."""

    content: str
    """The visible answer."""
    reasoning_content: str
    """The hidden reasoning (the ``<think>`` block), empty when there is none."""
    tool_calls: list[ToolCall]
    finish_reason: FinishReason
    stats: ChatStats
    text: str
    """The raw generated text, before splitting."""
    logprobs: list[TokenLogprob] | None = None
    """One per generated token when ``SamplingParams.logprobs`` was set, else ``None``."""

    @property
    def message(self) -> ChatMessage:
        """The reply as an assistant :class:`ChatMessage` (append it to continue the chat)."""
        return ChatMessage("assistant", self.content, self.reasoning_content or None,
                           list(self.tool_calls))


@dataclass(frozen=True)
class ToolCallDelta:
    """A streamed piece of one tool call (OpenAI's ``delta.tool_calls[i]``): ``index`` among the
    reply's tool calls; ``id`` and ``name`` when the call first appears, then ``arguments`` text
    to append."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ChatDelta:
    """A streamed piece of a chat reply: new answer text, new reasoning text, tool-call pieces."""

    content: str = ""
    reasoning_content: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    """The log-probabilities of the tokens decoded since the previous delta, when asked for."""


def _messages_json(messages: Sequence[MessageLike]) -> str:
    if isinstance(messages, (str, bytes)):
        raise TypeError("messages must be a list of messages, not a string")
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, ChatMessage):
            out.append(m.to_openai())
        elif isinstance(m, Mapping):
            if "role" not in m:
                raise ValueError(f"message without a 'role': {dict(m)!r}")
            out.append(dict(m))
        else:
            raise TypeError(f"a message must be a dict or ChatMessage, not {type(m).__name__}")
    return json.dumps(out, ensure_ascii=False)


class ChatSession:
    """Renders chats with a model's template and parses replies (one per model and template)."""

    def __init__(self, model: _core.Model, chat_template: str | None, tokenize: Tokenizer) -> None:
        self._tokenize = tokenize
        # the core raises ChatTemplateError itself (no template, or one that cannot be parsed)
        self._templates = _core.ChatTemplates(model, chat_template or "")

    def prepare(self, messages: Sequence[MessageLike], sampling: SamplingParams | None,
                enable_thinking: bool, reasoning_budget: int | None,
                tools: Sequence[Mapping[str, Any]] | None, tool_choice: str,
                json_schema: Mapping[str, Any] | None = None,
                ) -> tuple[_core.ChatPrompt, list[int], _core.SamplingOptions]:
        """Render the prompt, tokenize it, and derive the sampling options (the template's own
        grammar for ``json_schema`` or ``tools`` included, as llama-server does)."""
        if reasoning_budget is not None and reasoning_budget < 0:
            raise ValueError("reasoning_budget must be >= 0 (or None for no budget)")
        prompt = self._templates.apply(_messages_json(messages),
                                       json.dumps(list(tools)) if tools else "", tool_choice,
                                       "" if json_schema is None else schema_json(json_schema),
                                       enable_thinking, True)
        params = sampling or SamplingParams()
        params = replace(params, stop=list(params.stop) + list(prompt.additional_stops))
        native = params.to_native()
        prompt.constrain(native)
        if prompt.supports_thinking and prompt.thinking_start_tag and prompt.thinking_end_tags:
            # The thinking block's tags, always (as llama-server): besides the budget, they keep a
            # lazy tool-call grammar from triggering inside the reasoning.
            end_tags = [self._tokenize(t) for t in prompt.thinking_end_tags]
            native.reasoning_budget_tokens = -1 if reasoning_budget is None else int(reasoning_budget)
            native.reasoning_budget_start = self._tokenize(prompt.thinking_start_tag)
            native.reasoning_budget_end = end_tags
            native.reasoning_budget_forced = end_tags[0]
        return prompt, self._tokenize(prompt.prompt), native

    @staticmethod
    def result(prompt: _core.ChatPrompt, out: GenerationOutput) -> ChatResult:
        """Split a finished reply (parsed once, as a whole)."""
        parser = _core.ChatStreamParser(prompt)
        parser.push(out.text, True)
        return _result(parser, out)


def _delta(d: _core.ChatDelta) -> ChatDelta:
    calls = ([ToolCallDelta(d.tool_call_index, d.tool_call_id, d.tool_call_name, d.tool_call_arguments)]
             if d.tool_call_index >= 0 else [])
    return ChatDelta(d.content, d.reasoning_content, calls)


def _merge(deltas: list[_core.ChatDelta], logprobs: list[TokenLogprob] | None) -> ChatDelta | None:
    """One ChatDelta for the pieces of one step (None when there is nothing new)."""
    parts = [_delta(d) for d in deltas]
    merged = ChatDelta("".join(p.content for p in parts), "".join(p.reasoning_content for p in parts),
                       [c for p in parts for c in p.tool_calls], logprobs or None)
    if not (merged.content or merged.reasoning_content or merged.tool_calls):
        return None
    return merged


def _result(parser: _core.ChatStreamParser, out: GenerationOutput) -> ChatResult:
    parsed = parser.message()
    chat_stats = ChatStats(**asdict(out.stats), reasoning_chars=len(parsed.reasoning_content),
                           content_chars=len(parsed.content))
    calls = [ToolCall(c.name, c.arguments, c.id) for c in parsed.tool_calls]
    return ChatResult(parsed.content, parsed.reasoning_content, calls, out.finish_reason, chat_stats, out.text,
                      out.logprobs)


class _Assembler:
    """Turns a request's chunks into chat deltas (llama.cpp's parser, kept between chunks) and,
    at the end, the ChatResult. Log-probabilities of tokens whose text made no delta yet (a tag
    still forming) travel with the next delta."""

    def __init__(self, prompt: _core.ChatPrompt) -> None:
        self.parser = _core.ChatStreamParser(prompt)
        self.pending: list[TokenLogprob] = []

    def chunk(self, chunk: GenerationChunk) -> ChatDelta | None:
        if chunk.logprobs:
            self.pending.extend(chunk.logprobs)
        delta = _merge(self.parser.push(chunk.text, False), self.pending)
        if delta is not None:
            self.pending = []
        return delta

    def end(self, out: GenerationOutput | None) -> tuple[ChatDelta | None, ChatResult]:
        assert out is not None
        delta = _merge(self.parser.push("", True), self.pending)
        self.pending = []
        return delta, _result(self.parser, out)


class ChatStream(Iterator[ChatDelta]):
    """Iterator of :class:`ChatDelta`; afterwards :attr:`result` holds the :class:`ChatResult`.

    The reply is parsed as it streams, by llama.cpp's chat parser, and each step's change is
    handed out as a delta (``common_chat_msg_diff``), tool-call pieces included."""

    def __init__(self, prompt: _core.ChatPrompt, chunks: GenerationStream) -> None:
        self._assembler = _Assembler(prompt)
        self._chunks = chunks
        self.result: ChatResult | None = None
        """The complete reply, once the stream is exhausted."""

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatDelta:
        while self.result is None:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                delta, self.result = self._assembler.end(self._chunks.output)
                if delta is not None:
                    return delta
                break
            delta = self._assembler.chunk(chunk)
            if delta is not None:
                return delta
        raise StopIteration

    def close(self) -> None:
        """Stop the generation."""
        self._chunks.close()


class AsyncChatStream(AsyncIterator[ChatDelta]):
    """Async form of :class:`ChatStream`; afterwards :attr:`result` holds the :class:`ChatResult`."""

    def __init__(self, prompt: _core.ChatPrompt, chunks: AsyncGenerationStream) -> None:
        self._assembler = _Assembler(prompt)
        self._chunks = chunks
        self.result: ChatResult | None = None
        """The complete reply, once the stream is exhausted."""

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatDelta:
        while self.result is None:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                delta, self.result = self._assembler.end(self._chunks.output)
                if delta is not None:
                    return delta
                break
            delta = self._assembler.chunk(chunk)
            if delta is not None:
                return delta
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop the generation."""
        await self._chunks.aclose()
