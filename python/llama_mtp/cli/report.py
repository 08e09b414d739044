"""Printing timings the way the model card reports them (and as JSON)."""

from __future__ import annotations

import sys
from typing import TextIO

from ..results import GenerationStats


def timing_lines(stats: GenerationStats) -> list[str]:
    """Human-readable timing lines: prompt tok/s, generation tok/s, draft acceptance."""
    lines = [
        f"prompt eval : {stats.prompt_n:6d} tokens {stats.prompt_ms:10.2f} ms "
        f"({stats.prompt_per_second:8.2f} tok/s), {stats.cache_n} reused from cache",
        f"generation  : {stats.predicted_n:6d} tokens {stats.predicted_ms:10.2f} ms "
        f"({stats.predicted_per_second:8.2f} tok/s)",
    ]
    if stats.num_drafts:
        per_pos = ", ".join(f"{r:.2f}" for r in stats.acceptance_per_position)
        lines.append(f"draft       : {stats.draft_n} drafted, {stats.draft_n_accepted} accepted "
                     f"({stats.draft_acceptance_rate * 100:.2f} %), {stats.num_drafts} drafts, "
                     f"mean acceptance length {stats.mean_acceptance_length:.2f}, per position [{per_pos}]")
    return lines


def print_timings(stats: GenerationStats, out: TextIO | None = None) -> None:
    """Print :func:`timing_lines` (to stderr by default, like llama.cpp's perf print)."""
    stream = out or sys.stderr
    print(file=stream)
    for line in timing_lines(stats):
        print(line, file=stream)


def dim(text: str, stream: TextIO) -> str:
    """ANSI-dimmed text when ``stream`` is a terminal."""
    return f"\x1b[2m{text}\x1b[0m" if stream.isatty() else text
