"""Sampling parameters (vLLM's ``SamplingParams`` names, llama.cpp's ``common`` sampler)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import _core

DEFAULT_SEED = 0xFFFFFFFF
"""llama.cpp's ``LLAMA_DEFAULT_SEED``: a random seed for every call."""


@dataclass
class SamplingParams:
    """How tokens are chosen. ``temperature=0`` (or ``top_k=1``) is greedy decoding.

    Every option maps to llama.cpp's ``common`` sampler (the one ``llama-cli`` uses).
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = DEFAULT_SEED
    max_tokens: int | None = 256
    """``None``: until an end-of-generation token or a full context."""
    stop: list[str] = field(default_factory=list)
    """Strings that end generation; they are not part of the output text."""
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
    """A GBNF grammar constraining the output."""
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError("min_p must be in [0, 1]")
        if self.repeat_penalty <= 0:
            raise ValueError("repeat_penalty must be > 0")
        if self.max_tokens is not None and self.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0 or None")
        if not 0 <= self.seed <= 0xFFFFFFFF:
            raise ValueError("seed must fit in 32 bits")

    @classmethod
    def greedy(cls, max_tokens: int | None = 256, **kwargs: object) -> SamplingParams:
        """Deterministic decoding: ``temperature=0, top_k=1``."""
        return cls(temperature=0.0, top_k=1, max_tokens=max_tokens, **kwargs)  # type: ignore[arg-type]

    def to_native(self) -> _core.SamplingOptions:
        """The extension's options object."""
        o = _core.SamplingOptions()
        o.temperature = float(self.temperature)
        o.top_k = int(self.top_k)
        o.top_p = float(self.top_p)
        o.min_p = float(self.min_p)
        o.typical_p = float(self.typical_p)
        o.repeat_penalty = float(self.repeat_penalty)
        o.repeat_last_n = int(self.repeat_last_n)
        o.presence_penalty = float(self.presence_penalty)
        o.frequency_penalty = float(self.frequency_penalty)
        o.seed = int(self.seed)
        o.max_tokens = -1 if self.max_tokens is None else int(self.max_tokens)
        o.stop = list(self.stop)
        o.logit_bias = {int(k): float(v) for k, v in self.logit_bias.items()}
        o.grammar = self.grammar or ""
        o.ignore_eos = bool(self.ignore_eos)
        return o
