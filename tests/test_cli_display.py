"""What users look at: the bench chart stays readable at 1 to 4 models, and a streamed chat
reply keeps its reasoning apart from its answer without colours."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import pytest

from llama_mtp.cli.bench import Row, chart, chart_figure
from llama_mtp.cli.report import ReplyPrinter

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

TIERS = ("short", "8k", "32k")
VARIANTS = ("non-MTP", "MTP1", "MTP2", "MTP3")
MODELS = ("Qwen3.6-27B-MTP-Q4_K_M.gguf", "Qwen3.6-27B-MTP-Q8_0.gguf",
          "0123456789abcdef-qwen3.6-27b-Q4_K_M-0123456789ab.gguf", "Qwen3.5-9B-MTP-UD-Q5_K_XL.gguf")


def rows(n_models: int) -> list[Row]:
    out = []
    for m, tier, (v, variant) in itertools.product(MODELS[:n_models], TIERS, enumerate(VARIANTS)):
        gen = 10.0 + 3 * v - TIERS.index(tier)
        out.append(Row(m, tier, variant, 100, 200.0, gen, gen - 1.5, gen + 2.0,
                       None if v == 0 else 0.9 - 0.1 * v))
    return out


def overlap(a: Any, b: Any) -> bool:
    return bool(a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5)


@pytest.mark.parametrize("n_models", [1, 2, 4])
def test_bench_chart_is_readable(n_models: int, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = chart_figure(rows(n_models))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == list(MODELS[:n_models])  # the model once, as a title
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == list(VARIANTS)
    legend_box = legend.get_window_extent(renderer)
    title_box = fig._suptitle.get_window_extent(renderer)  # type: ignore[union-attr]
    assert not overlap(legend_box, title_box)
    for ax in axes:
        assert not overlap(ax.title.get_window_extent(renderer), title_box)
        assert not overlap(ax.title.get_window_extent(renderer), legend_box)
        assert [t.get_text() for t in ax.get_xticklabels()] == list(TIERS)  # no repeated model name
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        assert not any(overlap(a, b) for a, b in itertools.combinations(ticks, 2))
        assert not overlap(legend_box, ax.get_window_extent(renderer))
        labels = [t for t in ax.texts if t.get_text().endswith("%")]
        assert len(labels) == len(TIERS) * (len(VARIANTS) - 1)
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert not any(overlap(a, b) for a, b in itertools.combinations(boxes, 2))
        frame = ax.get_window_extent(renderer)
        for text, box in zip(labels, boxes):
            x, top_of_whisker = ax.transData.transform(text.xy)
            assert box.y0 >= top_of_whisker and box.y1 <= frame.y1  # above the whisker, inside
            assert box.x0 < x < box.x1
    plt.close(fig)
    assert chart(rows(n_models), tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def play(printer: ReplyPrinter) -> None:
    for reasoning, content in [("The user greets.", ""), (" Offer help.", ""), ("", "Hello!"),
                               ("", " How can I help?")]:
        printer.reasoning(reasoning)
        printer.content(content)
    printer.finish()


def test_reasoning_and_answer_are_kept_apart_without_colours() -> None:
    out = io.StringIO()
    play(ReplyPrinter(out, out))
    assert out.getvalue() == ("[Start thinking]\nThe user greets. Offer help.\n[End thinking]\n\n"
                              "Hello! How can I help?")


def test_reasoning_is_dimmed_on_a_terminal_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    play(ReplyPrinter(out, out))
    assert "\x1b[2mThe user greets.\x1b[0m" in out.getvalue() and "[End thinking]" in out.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    play(ReplyPrinter(plain, plain))
    assert "\x1b[" not in plain.getvalue() and "[Start thinking]" in plain.getvalue()


def test_reasoning_on_its_own_stream_and_hidden() -> None:
    content, reasoning = io.StringIO(), io.StringIO()
    play(ReplyPrinter(content, reasoning))
    assert content.getvalue() == "Hello! How can I help?"
    assert reasoning.getvalue() == "[Start thinking]\nThe user greets. Offer help.\n[End thinking]\n\n"
    hidden = io.StringIO()
    play(ReplyPrinter(hidden, None))
    assert hidden.getvalue() == "Hello! How can I help?"


def test_a_reply_cut_off_while_thinking_closes_the_block() -> None:
    out = io.StringIO()
    printer = ReplyPrinter(out, out)
    printer.reasoning("Still thinking\n")
    printer.finish()
    printer.finish()
    assert out.getvalue() == "[Start thinking]\nStill thinking\n[End thinking]\n\n"
