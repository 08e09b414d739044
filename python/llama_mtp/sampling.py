"""Sampling parameters (vLLM's ``SamplingParams`` names, llama.cpp's ``common`` sampler)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from . import _core

DEFAULT_SEED = 0xFFFFFFFF
"""llama.cpp's ``LLAMA_DEFAULT_SEED``: a random seed for every call."""

_NONE_IS_MINUS_ONE = frozenset({"max_tokens", "logprobs"})


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
    logprobs: int | None = None
    """``None``: off. ``k >= 0``: each generated token's log-probability under the target model,
    plus the ``k`` most likely alternatives (at most 20) -- ``GenerationOutput.logprobs``."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.max_tokens is not None and self.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0 or None")
        if not 0 <= self.seed <= 0xFFFFFFFF:
            raise ValueError("seed must fit in 32 bits")
        # Every other value is checked by the native core, the one place that knows the rules
        # (it checks again when a request is submitted, after any change to this object).
        _core.validate_sampling(self.to_native())

    @classmethod
    def greedy(cls, max_tokens: int | None = 256, **kwargs: object) -> SamplingParams:
        """Deterministic decoding: ``temperature=0, top_k=1``."""
        return cls(temperature=0.0, top_k=1, max_tokens=max_tokens, **kwargs)  # type: ignore[arg-type]

    def to_native(self) -> _core.SamplingOptions:
        """The extension's options object (fields of the same names; ``None`` is -1 / empty)."""
        o = _core.SamplingOptions()
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "logit_bias":
                value = {int(k): float(v) for k, v in value.items()}
            elif f.name == "stop":
                value = [str(x) for x in value]
            elif value is None:
                value = -1 if f.name in _NONE_IS_MINUS_ONE else ""
            setattr(o, f.name, value)
        return o
