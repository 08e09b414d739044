"""Sampling parameters (vLLM's ``SamplingParams`` names, llama.cpp's ``common`` sampler)."""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from . import _core

DEFAULT_SEED = 0xFFFFFFFF
"""llama.cpp's ``LLAMA_DEFAULT_SEED``: a random seed for every call."""

_NONE_IS_MINUS_ONE = frozenset({"max_tokens", "logprobs"})


def _option(default: Any = MISSING, *, kind: type, flags: tuple[str, ...] = (), keys: tuple[str, ...] = (),
            help: str = "", default_factory: Any = MISSING) -> Any:
    """A SamplingParams field with its command-line flags (llama-cli's) and request keys
    (OpenAI / llama-server JSON): the one definition the CLI and the server build from."""
    meta = {"kind": kind, "flags": flags, "keys": keys, "help": help}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SamplingParams:
    """How tokens are chosen. ``temperature=0`` (or ``top_k=1``) is greedy decoding.

    Every option maps to llama.cpp's ``common`` sampler (the one ``llama-cli`` uses). Each field
    also names its ``llama-cli`` flags and its keys in OpenAI / llama-server requests
    (:func:`option_fields`), from which the CLI and the server build their parameters.
    """

    temperature: float = _option(0.8, kind=float, flags=("--temp", "--temperature"), keys=("temperature",),
                                 help="sampling temperature (0: greedy)")
    top_k: int = _option(40, kind=int, flags=("--top-k",), keys=("top_k",), help="top-k sampling (0: off)")
    top_p: float = _option(0.95, kind=float, flags=("--top-p",), keys=("top_p",), help="top-p sampling (1: off)")
    min_p: float = _option(0.05, kind=float, flags=("--min-p",), keys=("min_p",), help="min-p sampling (0: off)")
    typical_p: float = _option(1.0, kind=float, flags=("--typical",), keys=("typical_p",),
                               help="locally typical sampling (1: off)")
    repeat_penalty: float = _option(1.0, kind=float, flags=("--repeat-penalty",), keys=("repeat_penalty",),
                                    help="penalty for repeated tokens (1: off)")
    repeat_last_n: int = _option(64, kind=int, flags=("--repeat-last-n",), keys=("repeat_last_n",),
                                 help="tokens the penalties look back at (-1: the context)")
    presence_penalty: float = _option(0.0, kind=float, flags=("--presence-penalty",), keys=("presence_penalty",),
                                      help="OpenAI presence penalty")
    frequency_penalty: float = _option(0.0, kind=float, flags=("--frequency-penalty",),
                                       keys=("frequency_penalty",), help="OpenAI frequency penalty")
    seed: int = _option(DEFAULT_SEED, kind=int, flags=("-s", "--seed"), keys=("seed",),
                        help="RNG seed (-1: random)")
    max_tokens: int | None = _option(256, kind=int, flags=("-n", "--predict", "--n-predict"),
                                     keys=("max_tokens", "max_completion_tokens", "n_predict"),
                                     help="tokens to generate (-1: until end of generation or a full context)")
    """``None``: until an end-of-generation token or a full context."""
    stop: list[str] = _option(kind=list, flags=("-r", "--reverse-prompt", "--stop"), keys=("stop",),
                              help="stop generating at this string (repeatable)", default_factory=list)
    """Strings that end generation; they are not part of the output text."""
    logit_bias: dict[int, float] = _option(kind=dict, keys=("logit_bias",), default_factory=dict)
    grammar: str | None = _option(None, kind=str, flags=("--grammar",), keys=("grammar",),
                                  help="GBNF grammar constraining the output")
    """A GBNF grammar constraining the output."""
    ignore_eos: bool = _option(False, kind=bool, flags=("--ignore-eos",), keys=("ignore_eos",),
                               help="never stop at an end-of-generation token")
    logprobs: int | None = _option(None, kind=int, help="log-probabilities of the generated tokens")
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


def option_fields() -> list[Field[Any]]:
    """The fields of :class:`SamplingParams` with their metadata: ``kind`` (the value type),
    ``flags`` (llama-cli's), ``keys`` (request JSON keys, the first canonical) and ``help``."""
    return list(fields(SamplingParams))


def none_means_default(name: str, value: Any) -> Any:
    """llama.cpp's "-1" spellings: a seed of -1 is a random seed, ``max_tokens`` of -1 is no limit."""
    if name == "seed" and (value is None or value == -1):
        return DEFAULT_SEED
    if name == "max_tokens" and value is not None and value < 0:
        return None
    return value
