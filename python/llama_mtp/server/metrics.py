"""``GET /metrics``: Prometheus text format with llama-server's ``llamacpp:`` names.

The names, types and meanings are those of llama-server in the vendored tree
(``tools/server/server-task.cpp``), whose speculative counters follow vLLM's
(``spec_decode_num_drafts``, ``spec_decode_num_draft_tokens``, ``spec_decode_num_accepted_tokens``,
``spec_decode_num_accepted_tokens_per_pos{position="i"}``; counters end in ``_total`` as
Prometheus exposes them); ``kv_cache_usage_ratio`` and ``kv_cache_tokens`` are the gauges older
llama-servers had.

The figures are the engine's own counters (:meth:`Model.metrics <llama_mtp.Model.metrics>`),
plus ``requests_rejected_total``: the requests the server refused with 503.
"""

from __future__ import annotations

from typing import Any

from ..engine import EngineMetrics

PREFIX = "llamacpp:"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name, help, EngineMetrics field
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


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(metrics: EngineMetrics, *, rejected: int) -> str:
    """Prometheus text of the engine's ``metrics`` and the server's ``rejected`` count."""
    lines: list[str] = []

    def add(name: str, kind: str, help: str, value: Any) -> None:
        lines.append(f"# HELP {PREFIX}{name} {help}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        lines.append(f"{PREFIX}{name} {_fmt(value)}")

    for name, help, attr in _COUNTERS:
        add(name, "counter", help, getattr(metrics, attr))
    add("requests_rejected_total", "counter", "Requests refused with 503 (queue full)", rejected)
    # averages, as llama-server computes them
    secs = metrics.prompt_seconds_total
    add("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s",
        metrics.prompt_tokens_total / secs if secs > 0 else 0.0)
    secs = metrics.tokens_predicted_seconds_total
    add("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s",
        metrics.tokens_predicted_total / secs if secs > 0 else 0.0)
    for name, help, attr in _GAUGES:
        add(name, "gauge", help, getattr(metrics, attr))
    add("n_busy_slots_per_decode", "gauge", "Average number of busy slots per llama_decode() call",
        metrics.n_busy_slots_per_decode)
    add("n_parallel", "gauge", "Number of sequence slots (-np)", metrics.n_parallel)
    if metrics.spec_decode_num_accepted_tokens_per_pos:
        name = f"{PREFIX}spec_decode_num_accepted_tokens_per_pos_total"
        lines.append(f"# HELP {name} Accepted tokens per draft position")
        lines.append(f"# TYPE {name} counter")
        lines.extend(f'{name}{{position="{i}"}} {_fmt(n)}'
                     for i, n in enumerate(metrics.spec_decode_num_accepted_tokens_per_pos))
    return "\n".join(lines) + "\n"
