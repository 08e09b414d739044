"""Typed results of generation: text, tokens, finish reason, and llama-server-style timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from . import _core

FinishReason = Literal["stop", "length", "eos", "cancelled"]


@dataclass(frozen=True)
class GenerationStats:
    """Timings and speculative-decoding figures of one call.

    Names follow llama-server's ``timings`` JSON (``prompt_n`` ... ``draft_n_accepted``) plus vLLM's
    speculative metrics (``num_drafts``, ``mean_acceptance_length``, per-position acceptance).
    Every field is always present; 0 when unused.
    """

    prompt_n: int = 0
    """Prompt tokens evaluated by this call."""
    cache_n: int = 0
    """Prompt tokens reused from the previous call (prefix cache)."""
    prompt_ms: float = 0.0
    predicted_n: int = 0
    """Tokens generated."""
    predicted_ms: float = 0.0
    draft_n: int = 0
    """Tokens drafted by the speculator."""
    draft_n_accepted: int = 0
    """Drafted tokens the target accepted."""
    num_drafts: int = 0
    """Verification steps that carried a draft."""
    accepted_per_position: list[int] = field(default_factory=list)
    """accepted_per_position[i]: drafts whose (i+1)-th token was accepted."""
    draft_len_histogram: list[int] = field(default_factory=list)
    """draft_len_histogram[k]: generation steps that drafted k tokens (a speculating request;
    with ``n_max="auto"`` it shows the lengths the engine chose)."""

    @property
    def prompt_per_second(self) -> float:
        """Prompt tokens per second (llama.cpp's "prompt eval" speed)."""
        return self.prompt_n / self.prompt_ms * 1e3 if self.prompt_ms > 0 else 0.0

    @property
    def predicted_per_second(self) -> float:
        """Generation tokens per second."""
        return self.predicted_n / self.predicted_ms * 1e3 if self.predicted_ms > 0 else 0.0

    @property
    def draft_acceptance_rate(self) -> float:
        """draft_n_accepted / draft_n, as llama.cpp reports "draft acceptance"."""
        return self.draft_n_accepted / self.draft_n if self.draft_n else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """vLLM's 1 + accepted / drafts (the bonus token included); 0 without drafts."""
        return 1.0 + self.draft_n_accepted / self.num_drafts if self.num_drafts else 0.0

    @property
    def acceptance_per_position(self) -> list[float]:
        """vLLM's per-position acceptance rate: accepted_per_position[i] / num_drafts."""
        return [n / self.num_drafts if self.num_drafts else 0.0 for n in self.accepted_per_position]

    def to_dict(self) -> dict[str, Any]:
        """llama-server ``timings`` keys plus the vLLM figures, for JSON output."""
        out = asdict(self)
        out.update(prompt_per_second=self.prompt_per_second,
                   predicted_per_second=self.predicted_per_second,
                   draft_acceptance_rate=self.draft_acceptance_rate,
                   mean_acceptance_length=self.mean_acceptance_length,
                   acceptance_per_position=self.acceptance_per_position)
        return out

    @classmethod
    def from_native(cls, s: _core.GenerationStats) -> GenerationStats:
        """Copy from the extension's stats object."""
        return cls(prompt_n=s.prompt_n, cache_n=s.cache_n, prompt_ms=s.prompt_ms,
                   predicted_n=s.predicted_n, predicted_ms=s.predicted_ms, draft_n=s.draft_n,
                   draft_n_accepted=s.draft_n_accepted, num_drafts=s.num_drafts,
                   accepted_per_position=list(s.accepted_per_position),
                   draft_len_histogram=list(s.draft_len_histogram))


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of a generated token under the target model (its raw distribution,
    before the sampler's temperature, top-k, ...), and the ``top`` most likely tokens at that
    position as ``(token, logprob)`` pairs, most likely first. With MTP the figures come from the
    verification row of each token, so they are the same as without a speculator."""

    token: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def from_native(cls, lp: _core.TokenLogprob) -> TokenLogprob:
        """Copy from the extension's object."""
        return cls(int(lp.token), float(lp.logprob), [(int(t), float(p)) for t, p in lp.top])


@dataclass(frozen=True)
class GenerationOutput:
    """The result of :meth:`llama_mtp.Model.generate`."""

    text: str
    tokens: list[int]
    finish_reason: FinishReason
    """"stop" (a stop string), "eos" (end-of-generation token), "length" (max_tokens or a full
    context) or "cancelled"."""
    stats: GenerationStats
    stop_reason: str | None = None
    """The stop string that ended generation, if any."""
    logprobs: list[TokenLogprob] | None = None
    """One per token when ``SamplingParams.logprobs`` was set, else ``None``."""

    @classmethod
    def from_native(cls, r: _core.GenerationResult, with_logprobs: bool = False) -> GenerationOutput:
        """Copy from the extension's result object."""
        reason: FinishReason = r.finish_reason  # type: ignore[assignment]
        logprobs = [TokenLogprob.from_native(lp) for lp in r.logprobs] if with_logprobs else None
        return cls(text=r.text, tokens=list(r.tokens), finish_reason=reason,
                   stats=GenerationStats.from_native(r.stats), stop_reason=r.stop_reason or None,
                   logprobs=logprobs)


@dataclass(frozen=True)
class GenerationChunk:
    """One step of a stream: new text (always whole UTF-8 characters) and the new token ids."""

    text: str
    tokens: list[int]
    logprobs: list[TokenLogprob] | None = None
    """One per token when ``SamplingParams.logprobs`` was set, else ``None``."""

    @classmethod
    def from_native(cls, text: str, tokens: list[int], logprobs: list[_core.TokenLogprob]) -> GenerationChunk:
        """Copy from the extension's chunk."""
        return cls(text, list(tokens), [TokenLogprob.from_native(lp) for lp in logprobs] if logprobs else None)
