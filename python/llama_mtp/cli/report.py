"""Printing timings the way the model card reports them (and as JSON)."""

from __future__ import annotations

import os
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


def styled(stream: TextIO) -> bool:
    """ANSI styling is wanted: ``stream`` is a terminal and ``NO_COLOR`` (no-color.org) is unset."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def dim(text: str, stream: TextIO) -> str:
    """ANSI-dimmed text when :func:`styled` says so."""
    return f"\x1b[2m{text}\x1b[0m" if styled(stream) else text


class ReplyPrinter:
    """Writes a streamed chat reply as llama-cli does: the reasoning between ``[Start thinking]``
    and ``[End thinking]`` lines (also dimmed on a terminal), then the answer. The markers keep
    the two apart where dimming does not show: a pipe, a log, ``NO_COLOR``.

    ``reasoning_out=None`` hides the reasoning.
    """

    START = "[Start thinking]\n"
    END = "[End thinking]\n\n"

    def __init__(self, content_out: TextIO, reasoning_out: TextIO | None) -> None:
        self._content_out = content_out
        self._reasoning_out = reasoning_out
        self._thinking = False
        self._line_open = False  # the reasoning written so far does not end with a newline

    def reasoning(self, text: str) -> None:
        """Write a piece of reasoning (opens the block on the first piece)."""
        out = self._reasoning_out
        if out is None or not text:
            return
        if not self._thinking:
            out.write(self.START)
            self._thinking = True
        out.write(dim(text, out))
        self._line_open = not text.endswith("\n")
        out.flush()

    def content(self, text: str) -> None:
        """Write a piece of the answer (closes an open reasoning block first)."""
        if not text:
            return
        self.finish()
        self._content_out.write(text)
        self._content_out.flush()

    def finish(self) -> None:
        """Close the reasoning block if one is open (a reply that ended while thinking)."""
        if self._thinking and self._reasoning_out is not None:
            self._reasoning_out.write(("\n" if self._line_open else "") + self.END)
            self._reasoning_out.flush()
        self._thinking = False
