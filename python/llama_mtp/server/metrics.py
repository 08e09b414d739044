"""``GET /metrics``: Prometheus text format with llama-server's ``llamacpp:`` names.

The names, types and meanings are those of llama-server in the vendored tree
(``tools/server/server-task.cpp``), whose speculative counters follow vLLM's
(``spec_decode_num_drafts``, ``spec_decode_num_draft_tokens``, ``spec_decode_num_accepted_tokens``,
``spec_decode_num_accepted_tokens_per_pos{position="i"}``; counters end in ``_total`` as
Prometheus exposes them); ``kv_cache_usage_ratio`` and ``kv_cache_tokens`` are the gauges older
llama-servers had.

Where the figures come from: the engine's own counters (``Model.metrics()``) when the engine has
them; otherwise the server counts every finished generation's stats itself (then the figures
the server cannot see — ``n_decode_total``, ``n_busy_slots_per_decode``, the KV cache — are left
out rather than reported as 0) and derives ``requests_processing`` / ``requests_deferred`` from
the generations it has admitted and the engine's slot count.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..results import GenerationStats

PREFIX = "llamacpp:"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name, type, help, key in the engine's metrics dict (None: computed)
_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens",
     "prompt_tokens_total"),
    ("prompt_seconds_total", "Total time spent processing prompts", "prompt_seconds_total"),
    ("tokens_predicted_total", "Number of generation tokens processed", "tokens_predicted_total"),
    ("tokens_predicted_seconds_total", "Total time spent generating tokens",
     "tokens_predicted_seconds_total"),
    ("n_decode_total", "Total number of llama_decode() calls", "n_decode_total"),
    ("requests_finished_total", "Number of generations finished (any reason)",
     "requests_finished_total"),
    ("spec_decode_num_drafts_total", "Speculative: Total speculative decoding verification steps",
     "spec_decode_num_drafts"),
    ("spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated",
     "spec_decode_num_draft_tokens"),
    ("spec_decode_num_accepted_tokens_total",
     "Speculative: Total draft tokens accepted by the target model", "spec_decode_num_accepted_tokens"),
)
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("requests_processing", "Number of requests processing", "requests_processing"),
    ("requests_deferred", "Number of requests deferred", "requests_deferred"),
    ("kv_cache_usage_ratio", "KV-cache usage. 1 means 100 percent usage", "kv_cache_usage_ratio"),
    ("kv_cache_tokens", "KV-cache tokens", "kv_cache_tokens"),
)


@dataclass
class Counters:
    """What the server counts itself: every finished generation's stats, requests it refused."""

    prompt_tokens_total: int = 0
    prompt_seconds_total: float = 0.0
    tokens_predicted_total: int = 0
    tokens_predicted_seconds_total: float = 0.0
    requests_finished_total: int = 0
    spec_decode_num_drafts: int = 0
    spec_decode_num_draft_tokens: int = 0
    spec_decode_num_accepted_tokens: int = 0
    spec_decode_num_accepted_tokens_per_pos: list[int] = field(default_factory=list)
    requests_rejected_total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, stats: GenerationStats) -> None:
        """Count one finished generation."""
        with self._lock:
            self.prompt_tokens_total += stats.prompt_n
            self.prompt_seconds_total += stats.prompt_ms / 1e3
            self.tokens_predicted_total += stats.predicted_n
            self.tokens_predicted_seconds_total += stats.predicted_ms / 1e3
            self.requests_finished_total += 1
            self.spec_decode_num_drafts += stats.num_drafts
            self.spec_decode_num_draft_tokens += stats.draft_n
            self.spec_decode_num_accepted_tokens += stats.draft_n_accepted
            per_pos = self.spec_decode_num_accepted_tokens_per_pos
            for i, n in enumerate(stats.accepted_per_position):
                if i == len(per_pos):
                    per_pos.append(0)
                per_pos[i] += n

    def rejected(self) -> None:
        """Count a request refused with 503."""
        with self._lock:
            self.requests_rejected_total += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as the engine's ``metrics().to_dict()`` names them."""
        with self._lock:
            return {k: (list(v) if isinstance(v, list) else v) for k, v in vars(self).items()
                    if not k.startswith("_")}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(values: Mapping[str, Any], *, rejected: int) -> str:
    """Prometheus text of ``values`` (the engine's ``metrics().to_dict()`` keys, or the server's
    :meth:`Counters.snapshot` plus gauges); keys absent from ``values`` are left out."""
    lines: list[str] = []

    def add(name: str, kind: str, help: str, value: Any) -> None:
        lines.append(f"# HELP {PREFIX}{name} {help}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        lines.append(f"{PREFIX}{name} {_fmt(value)}")

    for name, help, key in _COUNTERS:
        if key in values:
            add(name, "counter", help, values[key])
    lines.append(f"# HELP {PREFIX}requests_rejected_total Requests refused with 503 (queue full)")
    lines.append(f"# TYPE {PREFIX}requests_rejected_total counter")
    lines.append(f"{PREFIX}requests_rejected_total {rejected}")
    # averages, as llama-server computes them
    if "prompt_tokens_total" in values and "prompt_seconds_total" in values:
        secs = float(values["prompt_seconds_total"])
        add("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s",
            values["prompt_tokens_total"] / secs if secs > 0 else 0.0)
    if "tokens_predicted_total" in values and "tokens_predicted_seconds_total" in values:
        secs = float(values["tokens_predicted_seconds_total"])
        add("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s",
            values["tokens_predicted_total"] / secs if secs > 0 else 0.0)
    for name, help, key in _GAUGES:
        if key in values:
            add(name, "gauge", help, values[key])
    if "n_busy_slots_total" in values and "n_decode_total" in values:
        add("n_busy_slots_per_decode", "gauge", "Average number of busy slots per llama_decode() call",
            values["n_busy_slots_total"] / max(float(values["n_decode_total"]), 1.0))
    if "n_parallel" in values:
        add("n_parallel", "gauge", "Number of sequence slots (-np)", values["n_parallel"])
    per_pos = values.get("spec_decode_num_accepted_tokens_per_pos") or []
    if per_pos:
        name = f"{PREFIX}spec_decode_num_accepted_tokens_per_pos_total"
        lines.append(f"# HELP {name} Accepted tokens per draft position")
        lines.append(f"# TYPE {name} counter")
        lines.extend(f'{name}{{position="{i}"}} {_fmt(n)}' for i, n in enumerate(per_pos))
    return "\n".join(lines) + "\n"
