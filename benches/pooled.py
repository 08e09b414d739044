"""Pooled ratios: every contender against llama.cpp native over all cells of one or more runs.

    python benches/pooled.py benches/results/short-t2.json [more.json ...] [--md OUT.md]

One cell (quant x agreement) holds 5 runs, and on a 2-core machine a run's speed moves by
several percent with whatever else the machine does, so a single cell's ratio is only good to
about +-4 %. The engines under test run the same llama.cpp kernels, so their ratio should not
depend on the cell: pooling the paired ratios of all cells (each run against the native run of
the same repeat, back to back) gives the better estimate. Reported per (workload, contender, reference; agreement where MTP meets plain decoding):
the number of pairs, the median and geometric mean of the paired ratios, and a bootstrap 95 %
interval of the geometric mean (10,000 resamples, fixed seed: the same input gives the same
table).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

NATIVE = {"plain": "server", "mtp": "server-mtp"}
"""The llama.cpp reference every ratio is taken against (same loop shape: timings from the first
generated token to the last, sampling included, as ours). bench.py's tables use it too."""
PLAIN_CONTENDERS = ("ours", "server", "completion", "lcp", "lcp-pld")
MTP_CONTENDERS = ("ours-mtp", "server-mtp", "spec-simple-mtp")
PLAIN_BASE = {"ours-mtp": "ours", "server-mtp": "server", "spec-simple-mtp": "completion",
              "lcp-pld": "lcp"}
"""Each speculative contender's own plain decoding, for its speed-up."""
COMPARISONS = [("ours", NATIVE["plain"]), ("ours-mtp", NATIVE["mtp"]),
               ("completion", NATIVE["plain"]), ("spec-simple-mtp", NATIVE["mtp"]),
               ("lcp", NATIVE["plain"]), ("lcp-pld", NATIVE["plain"]),
               ("llama-bench", NATIVE["plain"]), ("ours", "lcp"), ("ours-mtp", "lcp")]
"""(contender, reference) pairs: each contender against llama.cpp's loop of the same shape, and
llama-mtp against llama-cpp-python's plain decoding (its best: its prompt-lookup speculation
fails on Qwen3.5/3.6, see bench.py)."""


def paired_ratios(trials: list[dict[str, Any]], metric: str) -> dict[tuple[str, str, str, str], list[float]]:
    """(workload, contender, reference) -> contender metric / reference metric, one per repeat of
    every cell (plain references run on the plain agreement's model only: the pair is taken
    within the quantization and repeat, whatever the agreement)."""
    by_key: dict[tuple[Any, ...], float] = {}
    for t in trials:
        v = t.get(metric) if metric != "cpu_s" else (t.get("extra") or {}).get("cpu_s")
        if t.get("correct") and v:
            by_key[(t["workload"], t["quant"], t["agreement"], t["rep"], t["contender"])] = float(v)
    plain_ref = {(wl, q, rep, c): v for (wl, q, ag, rep, c), v in by_key.items()}
    out: dict[tuple[str, str, str, str], list[float]] = {}
    for (wl, q, ag, rep, c), v in sorted(by_key.items()):
        for contender, reference in COMPARISONS:
            if contender != c:
                continue
            ref = by_key.get((wl, q, ag, rep, reference))
            if ref is None and not reference.endswith("-mtp"):
                ref = plain_ref.get((wl, q, rep, reference))
            if ref is None:
                continue
            # for CPU seconds less is better: reference / contender, so > 1 means "better" too
            ratio = ref / v if metric == "cpu_s" else v / ref
            # MTP against plain decoding depends on the agreement: keep those apart
            group = f"{ag:g}" if c.endswith("-mtp") and not reference.endswith("-mtp") else "all"
            out.setdefault((wl, c, reference, group), []).append(ratio)
    return out


def geomean_ci(xs: list[float], n_boot: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Geometric mean and its percentile-bootstrap 95 % interval."""
    logs = [math.log(x) for x in xs]
    rng = random.Random(seed)
    boots = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(n_boot))
    lo, hi = boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]
    return math.exp(statistics.fmean(logs)), math.exp(lo), math.exp(hi)


def table(files: list[str]) -> str:
    """The Markdown table for the given results files."""
    trials: list[dict[str, Any]] = []
    for i, f in enumerate(files):
        # a repeat pairs runs of one file only: repeat 0 of two files are different runs
        trials += [dict(t, rep=(i, t["rep"])) for t in json.loads(Path(f).read_text())["trials"]]
    return f"Pooled over: {', '.join(Path(f).name for f in files)}\n\n" + table_from_trials(trials)


def table_from_trials(trials: list[dict[str, Any]]) -> str:
    """The Markdown table for a list of bench.py trials."""
    lines = ["| workload | contender | vs | agreement | metric | pairs | median | geomean | 95 % CI |",
             "|---|---|---|---|---|---:|---:|---:|---|"]
    for metric, label in (("gen_tps", "gen tok/s"), ("prompt_tps", "prompt tok/s"),
                          ("cpu_s", "CPU (native ÷ it)")):
        for (wl, c, ref, group), xs in sorted(paired_ratios(trials, metric).items()):
            if len(xs) < 3 or (metric == "prompt_tps" and wl == "short"):
                continue  # a 19-token prompt times request handling, not prompt processing
            g, lo, hi = geomean_ci(xs)
            lines.append(f"| {wl} | {c} | {ref} | {group} | {label} | {len(xs)} | "
                         f"{statistics.median(xs):.3f} | {g:.3f} | {lo:.3f}–{hi:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="bench.py results JSON files")
    ap.add_argument("--md", default=None, help="also write the table to this file")
    a = ap.parse_args(argv)
    md = table(a.files)
    print(md, end="")
    if a.md:
        Path(a.md).write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
