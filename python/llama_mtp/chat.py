"""Chat on top of generation: the GGUF's own chat template applied, the reply split into visible
answer, hidden reasoning (``<think>``) and tool calls, all by llama.cpp's ``common`` chat code."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Union

from . import _core
from .errors import ChatTemplateError
from .results import FinishReason, GenerationStats
from .sampling import SamplingParams

if TYPE_CHECKING:
    from .model import Model, SpeculatorLike


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

    @property
    def message(self) -> ChatMessage:
        """The reply as an assistant :class:`ChatMessage` (append it to continue the chat)."""
        return ChatMessage("assistant", self.content, self.reasoning_content or None,
                           list(self.tool_calls))


@dataclass(frozen=True)
class ChatDelta:
    """A streamed piece of a chat reply: new answer text and new reasoning text."""

    content: str = ""
    reasoning_content: str = ""


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
    """Renders chats with a model's template and parses replies (one per Model and template)."""

    def __init__(self, model: Model, chat_template: str | None) -> None:
        self._model = model
        try:
            self._templates = _core.ChatTemplates(model.native, chat_template or "")
        except ValueError as exc:
            raise ChatTemplateError(str(exc)) from None

    def prepare(self, messages: Sequence[MessageLike], sampling: SamplingParams | None,
                enable_thinking: bool, reasoning_budget: int | None,
                tools: Sequence[Mapping[str, Any]] | None,
                tool_choice: str) -> tuple[_core.ChatPrompt, list[int], _core.SamplingOptions]:
        """Render the prompt, tokenize it, and derive the sampling options."""
        try:
            prompt = self._templates.apply(_messages_json(messages),
                                           json.dumps(list(tools)) if tools else "", tool_choice,
                                           enable_thinking, True)
        except ValueError as exc:
            raise ChatTemplateError(str(exc)) from None
        params = sampling or SamplingParams()
        params = replace(params, stop=list(params.stop) + list(prompt.additional_stops))
        native = params.to_native()
        native.generation_prompt = prompt.generation_prompt
        if reasoning_budget is not None:
            if reasoning_budget < 0:
                raise ValueError("reasoning_budget must be >= 0 (or None for no budget)")
            if prompt.supports_thinking and prompt.thinking_start_tag and prompt.thinking_end_tags:
                tok = self._model.tokenize
                end_tags = [tok(t, parse_special=True) for t in prompt.thinking_end_tags]
                native.reasoning_budget_tokens = int(reasoning_budget)
                native.reasoning_budget_start = tok(prompt.thinking_start_tag, parse_special=True)
                native.reasoning_budget_end = end_tags
                native.reasoning_budget_forced = end_tags[0]
        tokens = self._model.tokenize(prompt.prompt, add_special=True, parse_special=True)
        return prompt, tokens, native

    @staticmethod
    def result(prompt: _core.ChatPrompt, text: str, finish_reason: FinishReason,
               stats: GenerationStats) -> ChatResult:
        """Split a finished reply."""
        parsed = prompt.parse(text, False)
        chat_stats = ChatStats(**asdict(stats), reasoning_chars=len(parsed.reasoning_content),
                               content_chars=len(parsed.content))
        calls = [ToolCall(c.name, c.arguments, c.id) for c in parsed.tool_calls]
        return ChatResult(parsed.content, parsed.reasoning_content, calls, finish_reason, chat_stats, text)


class ChatStream(Iterator[ChatDelta]):
    """Iterator of :class:`ChatDelta`; afterwards :attr:`result` holds the :class:`ChatResult`."""

    def __init__(self, prompt: _core.ChatPrompt, chunks: Any) -> None:
        self._prompt = prompt
        self._chunks = chunks
        self._text = ""
        self._content = ""
        self._reasoning = ""
        self.result: ChatResult | None = None
        """The complete reply, once the stream is exhausted."""

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatDelta:
        while True:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                out = self._chunks.output
                self.result = ChatSession.result(self._prompt, out.text, out.finish_reason, out.stats)
                delta = ChatDelta(self.result.content[len(self._content):],
                                  self.result.reasoning_content[len(self._reasoning):])
                self._content, self._reasoning = self.result.content, self.result.reasoning_content
                if delta.content or delta.reasoning_content:
                    return delta
                raise
            self._text += chunk.text
            parsed = self._prompt.parse(self._text, True)
            # Parsed text only grows while streaming; anything else (a tag still forming) waits.
            if parsed.content.startswith(self._content) and parsed.reasoning_content.startswith(self._reasoning):
                delta = ChatDelta(parsed.content[len(self._content):],
                                  parsed.reasoning_content[len(self._reasoning):])
                self._content, self._reasoning = parsed.content, parsed.reasoning_content
                if delta.content or delta.reasoning_content:
                    return delta

    def close(self) -> None:
        """Stop the generation."""
        self._chunks.close()


def chat(model: Model, session: ChatSession, messages: Sequence[MessageLike],
         sampling: SamplingParams | None, speculator: SpeculatorLike, enable_thinking: bool,
         reasoning_budget: int | None, tools: Sequence[Mapping[str, Any]] | None,
         tool_choice: str, stream: bool) -> ChatResult | ChatStream:
    """Implementation of :meth:`Model.chat` / :meth:`Model.chat_stream`."""
    prompt, tokens, native = session.prepare(messages, sampling, enable_thinking, reasoning_budget,
                                             tools, tool_choice)
    if stream:
        return ChatStream(prompt, model._stream_native(tokens, native, speculator))
    out = model._generate_native(tokens, native, speculator)
    return ChatSession.result(prompt, out.text, out.finish_reason, out.stats)
