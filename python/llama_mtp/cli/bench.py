"""``llama-mtp bench``: the model card's tables — per model, MTP off and MTP n_max 1..3; prompt
tok/s, generation tok/s, draft acceptance; a short-context task and long-context tiers (~8k and
~32k prompt tokens, short answers); repetitions interleaved, median and spread; Markdown, JSON and
a PNG chart."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, TypeVar

from ..model import Model
from ..sampling import SamplingParams
from ..speculator import Speculator
from ..system import system_info
from .args import add_tensor_placement_args, tensor_placement_kwargs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIER_TOKENS = {"short": 0, "8k": 6616, "32k": 26738}
"""Prompt lengths of the card's tiers (section 5.3: about 6,616 and 26,738 tokens)."""

SHORT_PROMPT = ("Three people, A, B and C, are each either a truth-teller or a liar. A says: "
                "'B is lying.' B says: 'C is lying.' C says: 'A and B are both lying.' Who is lying?")
FILLER = ("The archive holds reports on rivers, bridges, harvests and weather from many towns. "
          "Each report lists a date, a place, a measurement and a short remark by the clerk. ")


@dataclass
class Run:
    """One measured generation."""

    model: str
    tier: str
    variant: str
    rep: int
    prompt_n: int
    prompt_per_second: float
    predicted_n: int
    predicted_per_second: float
    draft_acceptance_rate: float
    mean_acceptance_length: float
    finish_reason: str


@dataclass
class Row:
    """Median and spread of the runs of one (model, tier, variant)."""

    model: str
    tier: str
    variant: str
    prompt_n: int
    prompt_tps: float
    gen_tps: float
    gen_tps_min: float
    gen_tps_max: float
    acceptance: float | None
    runs: list[Run] = field(default_factory=list, repr=False)


T = TypeVar("T")


def progress(items: list[T], desc: str) -> Iterator[T]:
    """``items`` with a progress bar on stderr: tqdm's when it is installed (it is not a
    dependency of the base install), otherwise one line per item."""
    try:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        for i, item in enumerate(items):
            print(f"{desc}: run {i + 1}/{len(items)}", file=sys.stderr, flush=True)
            yield item
        return
    yield from tqdm(items, desc=desc, unit="run", file=sys.stderr)


def long_prompt(model: Model, n_tokens: int) -> str:
    """A long-document retrieval prompt of about ``n_tokens`` tokens."""
    question = "\nQuestion: which town reported the highest river level? Answer in one sentence."
    per = max(1, len(model.tokenize(FILLER)))
    body = "".join(f"[{i}] {FILLER}" for i in range(max(1, n_tokens // (per + 3))))
    return body + question


def variants(n_maxes: list[int]) -> list[tuple[str, Speculator]]:
    """MTP off, then MTP with each n_max."""
    return [("non-MTP", Speculator.none())] + [(f"MTP{k}", Speculator.mtp(n_max=k)) for k in n_maxes]


def parse_tiers(text: str) -> list[tuple[str, int]]:
    """``short,8k,32k`` or explicit token counts (``short,2048``)."""
    tiers: list[tuple[str, int]] = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        if name in TIER_TOKENS:
            tiers.append((name, TIER_TOKENS[name]))
        elif name.isdigit():
            tiers.append((f"ctx{name}", int(name)))
        else:
            raise ValueError(f"unknown tier {name!r}: use short, 8k, 32k or a token count")
    return tiers


def summarise(runs: list[Run]) -> list[Row]:
    """Group runs and take medians."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.model, r.tier, r.variant), []).append(r)
    rows = []
    for (model, tier, variant), rs in groups.items():
        gen = [r.predicted_per_second for r in rs]
        rows.append(Row(model, tier, variant, rs[0].prompt_n,
                        statistics.median(r.prompt_per_second for r in rs), statistics.median(gen),
                        min(gen), max(gen),
                        None if variant == "non-MTP" else statistics.median(r.draft_acceptance_rate for r in rs),
                        rs))
    return rows


def markdown(rows: list[Row]) -> str:
    """The card-style table."""
    out = ["| Model | Tier | Variant | Prompt tokens | Prompt tok/s | Generation tok/s (min–max) | "
           "Draft acceptance | Speed-up |", "|---|---|---|---:|---:|---:|---:|---:|"]
    base = {(r.model, r.tier): r.gen_tps for r in rows if r.variant == "non-MTP"}
    for r in rows:
        acc = "-" if r.acceptance is None else f"{r.acceptance * 100:.2f}%"
        ref = base.get((r.model, r.tier))
        speed = f"x{r.gen_tps / ref:.2f}" if ref else "-"
        out.append(f"| {r.model} | {r.tier} | {r.variant} | {r.prompt_n} | {r.prompt_tps:.2f} | "
                   f"{r.gen_tps:.2f} ({r.gen_tps_min:.2f}–{r.gen_tps_max:.2f}) | {acc} | {speed} |")
    return "\n".join(out)


def _short(name: str, limit: int = 64) -> str:
    """``name`` cut in the middle to ``limit`` characters."""
    if len(name) <= limit:
        return name
    keep = (limit - 1) // 2
    return name[:keep] + "…" + name[-(limit - 1 - keep):]


def _variant_colour(variant: str) -> str:
    """Grey for MTP off, deeper blues for longer drafts (MTP1, MTP2, ...)."""
    if not variant.startswith("MTP"):
        return "#9a9a9a"
    blues = ["#9ecae1", "#4292c6", "#2171b5", "#08519c", "#08306b"]
    n = int(variant[3:]) if variant[3:].isdigit() else 1
    return blues[min(max(n, 1), len(blues)) - 1]


def chart_figure(rows: list[Row]) -> Figure:
    """The chart: one panel per model (its file name as the title), bars grouped by tier, one
    bar per variant (colours in the legend), whiskers min–max, draft acceptance above the
    whiskers of the MTP bars. Needs matplotlib."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    tiers = list(dict.fromkeys(r.tier for r in rows))
    names = list(dict.fromkeys(r.variant for r in rows))
    by_key = {(r.model, r.tier, r.variant): r for r in rows}
    width = 0.8 / len(names)
    fig, axes = plt.subplots(len(models), 1, squeeze=False, layout="constrained",
                             figsize=(max(6.4, 1.4 + len(tiers) * (0.4 + 0.5 * len(names))),
                                      1.0 + 2.6 * len(models)))
    for ax, model in zip(axes[:, 0], models):
        top = 0.0
        for j, variant in enumerate(names):
            here = [(i, by_key[(model, tier, variant)]) for i, tier in enumerate(tiers)
                    if (model, tier, variant) in by_key]
            xs = [i - 0.4 + width * (j + 0.5) for i, _ in here]
            bars = [r for _, r in here]
            ax.bar(xs, [r.gen_tps for r in bars], width * 0.92, color=_variant_colour(variant),
                   label=variant, yerr=[[r.gen_tps - r.gen_tps_min for r in bars],
                                        [r.gen_tps_max - r.gen_tps for r in bars]],
                   capsize=2, error_kw={"elinewidth": 0.8, "capthick": 0.8})
            for x, r in zip(xs, bars):
                top = max(top, r.gen_tps_max)
                if r.acceptance is not None:
                    ax.annotate(f"{r.acceptance * 100:.0f}%", xy=(x, r.gen_tps_max), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)  # room for the acceptance labels
        ax.set_xticks(range(len(tiers)), tiers)
        ax.set_ylabel("generation tok/s")
        ax.set_title(_short(model), fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.suptitle("llama-mtp bench: median generation tok/s (whiskers min–max; % = draft acceptance)",
                 fontsize=10)
    return fig


def chart(rows: list[Row], path: Path) -> bool:
    """Write :func:`chart_figure` as a PNG; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = chart_figure(rows)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def build_parser() -> argparse.ArgumentParser:
    """Options of ``llama-mtp bench``."""
    p = argparse.ArgumentParser(prog="llama-mtp bench", description=__doc__)
    p.add_argument("-m", "--model", action="append", required=True, help="GGUF (repeatable)")
    p.add_argument("--spec-draft-n-max", dest="n_maxes", default="1,2,3", help="MTP n_max values")
    p.add_argument("--tiers", default="short,8k,32k", help="short, 8k, 32k or token counts")
    p.add_argument("-r", "--repetitions", type=int, default=5)
    p.add_argument("-n", "--n-predict", dest="n_predict", type=int, default=256, help="tokens, short tier")
    p.add_argument("--long-n-predict", type=int, default=24, help="tokens, long tiers (short answers)")
    p.add_argument("-p", "--prompt", default=SHORT_PROMPT, help="short-tier prompt")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-ngl", "--gpu-layers", dest="gpu_layers", type=int, default=-1)
    p.add_argument("-c", "--ctx-size", type=int, default=0, help="0: fit the longest tier")
    p.add_argument("-b", "--batch-size", type=int, default=2048)
    p.add_argument("-ub", "--ubatch-size", type=int, default=512)
    p.add_argument("-o", "--output-dir", type=Path, default=Path("bench-results"))
    p.add_argument("--ignore-eos", action="store_true", help="always generate -n tokens")
    add_tensor_placement_args(p)
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``llama-mtp bench``."""
    a = build_parser().parse_args(argv)
    try:
        n_maxes = [int(x) for x in a.n_maxes.split(",") if x.strip()]
        tiers = parse_tiers(a.tiers)
    except ValueError as exc:
        print(f"llama-mtp bench: error: {exc}", file=sys.stderr)
        return 2
    if a.repetitions < 1:
        print("llama-mtp bench: error: --repetitions must be >= 1", file=sys.stderr)
        return 2
    n_ctx = a.ctx_size or max(t for _, t in tiers) + max(a.n_predict, a.long_n_predict) + 512
    runs: list[Run] = []
    for path in a.model:
        name = Path(path).name
        with Model(path, n_ctx=n_ctx, n_gpu_layers=a.gpu_layers, n_threads=a.threads,
                   n_batch=a.batch_size, n_ubatch=a.ubatch_size,
                   **tensor_placement_kwargs(a)) as model:  # type: ignore[arg-type]
            prompts = {tier: a.prompt if n == 0 else long_prompt(model, n) for tier, n in tiers}
            model.generate(a.prompt, SamplingParams.greedy(max_tokens=2), cache_prompt=False)  # warm-up
            jobs = [(tier, label, spec, rep) for rep in range(a.repetitions)
                    for tier, _ in tiers for label, spec in variants(n_maxes)]
            for tier, label, spec, rep in progress(jobs, f"bench {name}"):
                n = a.n_predict if tier == "short" else a.long_n_predict
                out = model.generate(prompts[tier], SamplingParams.greedy(max_tokens=n, ignore_eos=a.ignore_eos),
                                     speculator=spec, cache_prompt=False)
                s = out.stats
                runs.append(Run(name, tier, label, rep, s.prompt_n, s.prompt_per_second, s.predicted_n,
                                s.predicted_per_second, s.draft_acceptance_rate, s.mean_acceptance_length,
                                out.finish_reason))
    rows = summarise(runs)
    table = markdown(rows)
    print(table)
    a.output_dir.mkdir(parents=True, exist_ok=True)
    info = system_info()
    meta: dict[str, Any] = {"command": "llama-mtp bench " + " ".join(argv), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "machine": platform.platform(), "processor": platform.processor(),
                            "llama_commit": info.llama_commit, "backends": info.backends}
    (a.output_dir / "bench.md").write_text(f"Command: `{meta['command']}`\n\n{table}\n", encoding="utf-8")
    (a.output_dir / "bench.json").write_text(json.dumps(
        {"meta": meta, "rows": [{k: v for k, v in asdict(r).items() if k != "runs"} for r in rows],
         "runs": [asdict(r) for r in runs]}, indent=2), encoding="utf-8")
    if not chart(rows, a.output_dir / "bench.png"):
        print("(no chart: install matplotlib, e.g. pip install 'llama-mtp[bench]')", file=sys.stderr)
    print(f"\nwritten: {a.output_dir}/bench.md, bench.json, bench.png", file=sys.stderr)
    return 0
