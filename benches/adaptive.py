"""Adaptive draft length (``Speculator.mtp(n_max="auto")``) against plain decoding and every fixed
``n_max``, on the synthetic bench model at several MTP agreements and quantizations, and on the
``varying`` behaviour (agreement alternating between 1 and 0 along the text).

Each cell loads the model once per mode in this process (every mode its own engine: a model's
speculator is fixed, and auto keeps what it learns -- costs, acceptance -- across its requests,
as it does for a user); after a warm-up request each (which lets ``auto`` measure this machine's
step and drafting costs), ``--rounds`` rounds each run every mode once, in an order that
rotates every round, on the same prompt (greedy, ``cache_prompt=False``). A mode's speed is the
median of its generation tok/s over the rounds (the mean is reported too: auto re-checks with a
speculating request every 4th request when it serves plainly); the cell reports auto / the best
other mode. Interleaving the modes in one process exposes them to the same machine drift.

    python benches/adaptive.py --out adaptive-t2                      # the full table
    python benches/adaptive.py --agreements 0.8 --quants Q4_K_M --rounds 3 --out smoke

Writes benches/results/OUT.md and OUT.json with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import refs  # noqa: E402

MODES = ("plain", "mtp1", "mtp2", "mtp3", "auto")


def ensure_varying(quant: str) -> Path:
    """The bench preset with the ``varying`` behaviour (built once)."""
    from llama_mtp import synthetic

    path: Path = refs.CACHE / "models" / f"bench-v110080-{quant}-varying.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic.build(path, preset="bench", quant=quant, vocab_size=110080, behaviour="varying",
                        progress=True)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agreements", default="0.5,0.8,1.0")
    ap.add_argument("--quants", default="Q4_K_M,Q8_0")
    ap.add_argument("--varying", default="Q4_K_M", help="quants of the varying model ('' for none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n-predict", type=int, default=160)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log-auto", action="store_true",
                    help="print auto's per-request estimates (its DEBUG log lines) to stderr")
    a = ap.parse_args()
    if a.log_auto:
        import logging

        import llama_mtp

        class AutoLines(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage().startswith("adaptive:"):
                    print(record.getMessage(), file=sys.stderr, flush=True)

        logging.getLogger("llama_mtp").addHandler(AutoLines())
        llama_mtp.set_log_level("DEBUG")

    from llama_mtp import Model, SamplingParams, Speculator

    specs: dict[str, Any] = {"plain": Speculator.none(), "mtp1": Speculator.mtp(1),
                             "mtp2": Speculator.mtp(2), "mtp3": Speculator.mtp(3),
                             "auto": Speculator.mtp("auto")}
    cells: list[tuple[str, str, Path]] = []
    for q in [q for q in a.quants.split(",") if q]:
        for ag in [g for g in a.agreements.split(",") if g]:
            cells.append((q, ag, bench.ensure_model("bench", q, float(ag), 110080)))
    for q in [q for q in a.varying.split(",") if q]:
        cells.append((q, "varying", ensure_varying(q)))
    prompt = "Once upon a time, in an old harbour town called Kestrel Bay, there lived"
    greedy = SamplingParams.greedy(max_tokens=a.n_predict, ignore_eos=True)
    rows: list[dict[str, Any]] = []
    started = time.time()
    for q, ag, path in cells:
        speeds: dict[str, list[float]] = {m: [] for m in MODES}
        hist: list[int] = []
        tokens: dict[str, list[int]] = {}
        models = {m: Model(path, n_ctx=2048, n_threads=a.threads, n_threads_batch=a.threads,
                           speculator=specs[m]) for m in MODES}
        auto_drafted: list[bool] = []
        try:
            for m in MODES:  # warm-up: pages in the weights, auto learns the costs
                models[m].generate(prompt, greedy, speculator=specs[m], cache_prompt=False)
            for rnd in range(a.rounds):
                order = MODES[rnd % len(MODES):] + MODES[:rnd % len(MODES)]
                for m in order:
                    out = models[m].generate(prompt, greedy, speculator=specs[m], cache_prompt=False)
                    speeds[m].append(out.stats.predicted_per_second)
                    tokens.setdefault(m, out.tokens)
                    if m == "auto":
                        h = out.stats.draft_len_histogram
                        if a.log_auto:
                            print(f"auto request: {out.stats.predicted_per_second:.2f} tok/s, draft lengths {h}",
                                  file=sys.stderr, flush=True)
                        auto_drafted.append(sum(h) > 0)
                        if h:  # empty for a request served plainly
                            hist = [x + y for x, y in zip(hist, h)] if hist else list(h)
        finally:
            for model in models.values():
                model.close()
        med = {m: statistics.median(v) for m, v in speeds.items()}
        best_other = max((m for m in MODES if m != "auto"), key=lambda m: med[m])
        row = {"quant": q, "agreement": ag, **{f"{m}_tps": round(med[m], 3) for m in MODES},
               "auto_mean_tps": round(statistics.mean(speeds["auto"]), 3),
               "auto_mean/best": round(statistics.mean(speeds["auto"]) / med[best_other], 4),
               "auto_speculating_requests": f"{sum(auto_drafted)}/{len(auto_drafted)}",
               "best_other": best_other, "auto/best": round(med["auto"] / med[best_other], 4),
               "auto_draft_lengths": hist,
               "same_tokens": all(t == tokens["plain"] for t in tokens.values())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = ["# Adaptive draft length vs plain and fixed n_max (generation tok/s, medians)", "",
             f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
             f"- machine: {bench.machine()}; load {bench.loadavg()}",
             f"- bench preset (vocab 110080), -t {a.threads}, {a.n_predict} tokens greedy, "
             f"{a.rounds} interleaved rounds after a warm-up; {time.time() - started:.0f} s", "",
             "| quant | agreement | plain | MTP1 | MTP2 | MTP3 | auto | auto / best other | "
             "auto mean / best | auto's speculating requests | auto's draft lengths (k: steps) | same tokens |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        chosen = ", ".join(f"{k}: {n}" for k, n in enumerate(r["auto_draft_lengths"]) if n)
        lines.append(f"| {r['quant']} | {r['agreement']} | {r['plain_tps']:.2f} | {r['mtp1_tps']:.2f} | "
                     f"{r['mtp2_tps']:.2f} | {r['mtp3_tps']:.2f} | {r['auto_tps']:.2f} | "
                     f"{r['auto/best']:.3f} ({r['best_other']}) | {r['auto_mean/best']:.3f} | "
                     f"{r['auto_speculating_requests']} | {chosen or '-'} | {r['same_tokens']} |")
    md = "\n".join(lines) + "\n"
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    (bench.RESULTS / f"{a.out}.md").write_text(md)
    (bench.RESULTS / f"{a.out}.json").write_text(json.dumps({"rows": rows}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
