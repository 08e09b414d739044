"""Adaptive draft length (``Speculator.mtp(n_max="auto")``) against plain decoding and every fixed
``n_max``, on the synthetic bench model at several MTP agreements and quantizations, and on the
``varying`` behaviour (agreement alternating between 1 and 0 along the text).

Every mode runs in its own process (``_worker_ours.py``: one engine, the model's speculator fixed
at load, as a user runs it). Each round starts the five processes afresh, in an order shuffled
every round (one process's memory layout moves its speed by a few per cent for as long as it
lives: fresh processes make that noise instead of a bias), lets each serve ``--warmups`` untimed
requests (auto measures this machine's step and drafting costs in its first, and keeps what it
learns across requests), then sends each the same request (greedy, ``ignore_eos``, no prompt
cache) at once: the processes take turns of ``--slice-ms`` on all CPUs, the others stopped
(SIGSTOP), as ``side_by_side.py --threads N`` does for two, so drift of the shared machine slower
than one turn of all five hits every mode alike. A mode's speed is its generated tokens over the
time it was let run until its reply; the cell reports the median over the rounds of auto / each
other mode in the same round, and auto / the best of them. (auto's own step timings see a
stopped turn now and then: it leaves the slowest quarter of its measurements out, as it does for
a step another process interrupts.)

    python benches/adaptive.py --out adaptive-t2                      # the full table
    python benches/adaptive.py --agreements 0.8 --quants Q4_K_M --rounds 3 --out smoke

Writes benches/results/OUT.md and OUT.json with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import random
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
import side_by_side  # noqa: E402

# each mode and the n_max its speculator is loaded with (0: none)
N_MAX: dict[str, int | str] = {"plain": 0, "mtp1": 1, "mtp2": 2, "mtp3": 3, "auto": "auto"}
MODES = tuple(N_MAX)


def ensure_varying(quant: str) -> Path:
    """The bench preset with the ``varying`` behaviour (built once)."""
    from llama_mtp import synthetic

    path: Path = refs.CACHE / "models" / f"bench-v110080-{quant}-varying.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic.build(path, preset="bench", quant=quant, vocab_size=110080, behaviour="varying",
                        progress=True)
    return path


class Mode(side_by_side.EngineProcess):
    """One mode's worker process and its request (what ``side_by_side.run_sliced`` runs)."""

    def __init__(self, name: str, path: Path, prompt: Path, threads: int, n_predict: int,
                 log_auto: bool) -> None:
        self.name = name
        self.n_max = N_MAX[name]
        self.request = {"prompt_file": str(prompt), "n_predict": n_predict, "n_max": self.n_max,
                        "ignore_eos": True}
        cfg = {"model": str(path), "threads": threads, "n_ctx": 2048, "n_batch": 2048, "n_ubatch": 512,
               "spec_n_max": self.n_max, "log_auto": log_auto and name == "auto"}
        self.worker = bench.JsonWorker([sys.executable, str(HERE / "_worker_ours.py"), json.dumps(cfg)])
        self.engine = self.worker
        self.out: dict[str, Any] = {}

    def ask(self) -> dict[str, Any]:
        return self.worker.ask(self.request)

    def _run(self) -> None:
        self.out = dict(self.ask(), finished=time.perf_counter())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agreements", default="0.5,0.8,1.0")
    ap.add_argument("--quants", default="Q4_K_M,Q8_0")
    ap.add_argument("--varying", default="Q4_K_M", help="quants of the varying model ('' for none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--warmups", type=int, default=2,
                    help="untimed requests each process serves first (auto measures the costs)")
    ap.add_argument("--n-predict", type=int, default=96)
    ap.add_argument("--slice-ms", type=float, default=1000.0,
                    help="turn length (long next to a step: auto times its steps)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--log-auto", action="store_true",
                    help="print auto's per-request estimates (its DEBUG log lines) to stderr")
    a = ap.parse_args()

    cells: list[tuple[str, str, Path]] = []
    for q in [q for q in a.quants.split(",") if q]:
        for ag in [g for g in a.agreements.split(",") if g]:
            cells.append((q, ag, bench.ensure_model("bench", q, float(ag), 110080)))
    for q in [q for q in a.varying.split(",") if q]:
        cells.append((q, "varying", ensure_varying(q)))
    prompt = refs.CACHE / "prompts" / "adaptive.txt"
    prompt.parent.mkdir(parents=True, exist_ok=True)
    prompt.write_text("Once upon a time, in an old harbour town called Kestrel Bay, there lived", encoding="utf-8")
    rows: list[dict[str, Any]] = []
    started = time.time()
    for q, ag, path in cells:
        speeds: dict[str, list[float]] = {m: [] for m in MODES}
        hist: list[int] = []
        tokens: dict[str, list[int]] = {}
        auto_drafted: list[bool] = []
        for rnd in range(a.rounds):
            # Fresh processes every round, loaded and run in an order shuffled every round: how
            # one process happens to be laid out in memory moves its speed by a few per cent for
            # as long as it lives, so no mode keeps one process's luck.
            order = random.Random(rnd).sample(MODES, len(MODES))
            modes: list[Mode] = []
            try:
                for m in order:
                    modes.append(Mode(m, path, prompt, a.threads, a.n_predict, a.log_auto))
                for mode in modes:  # warm-up, one at a time: pages in the weights, auto learns
                    for _ in range(a.warmups):
                        for line in mode.ask().get("log", []):
                            print(line, file=sys.stderr, flush=True)
                running = side_by_side.run_sliced(modes, a.slice_ms / 1e3, first=0)
                for mode, secs in zip(modes, running):
                    if not mode.out:
                        raise SystemExit(f"the {mode.name} worker failed")
                    speeds[mode.name].append(mode.out["predicted_n"] / secs)
                    tokens.setdefault(mode.name, mode.out["tokens"])
                out = modes[order.index("auto")].out
            finally:
                for mode in modes:
                    mode.close()
            h = out.get("draft_len_histogram") or []
            if a.log_auto:
                for line in out.get("log", []):
                    print(line, file=sys.stderr, flush=True)
                print(f"auto request: {speeds['auto'][-1]:.2f} tok/s, draft lengths {h}",
                      file=sys.stderr, flush=True)
            auto_drafted.append(sum(h) > 0)
            if h:  # empty for a request served plainly
                hist = [x + y for x, y in zip(hist, h)] if hist else list(h)
        med = {m: statistics.median(v) for m, v in speeds.items()}
        # auto / each other mode, round by round (they ran in the same turns of the machine)
        vs = {m: statistics.median(x / y for x, y in zip(speeds["auto"], speeds[m]))
              for m in MODES if m != "auto"}
        best_other = min(vs, key=lambda m: vs[m])
        row = {"quant": q, "agreement": ag, **{f"{m}_tps": round(med[m], 3) for m in MODES},
               **{f"auto/{m}": round(v, 4) for m, v in vs.items()},
               "auto_speculating_requests": f"{sum(auto_drafted)}/{len(auto_drafted)}",
               "best_other": best_other, "auto/best": round(vs[best_other], 4),
               "speeds": {m: [round(x, 2) for x in v] for m, v in speeds.items()},
               "auto_draft_lengths": hist,
               "same_tokens": all(t == tokens["plain"] for t in tokens.values())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = ["# Adaptive draft length vs plain and fixed n_max (generation tok/s, time-sliced)", "",
             f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
             f"- machine: {bench.machine()}; load {bench.loadavg()}",
             f"- bench preset (vocab 110080), -t {a.threads}, {a.n_predict} tokens greedy; every mode "
             f"its own process, started afresh every round ({a.rounds}) and warmed up with "
             f"{a.warmups} request(s), then time-sliced in turns of {a.slice_ms:g} ms; "
             f"{time.time() - started:.0f} s", "",
             "Speeds are medians over the rounds; the ratios are medians of the rounds' auto / mode.", "",
             "| quant | agreement | plain | MTP1 | MTP2 | MTP3 | auto | auto / plain | auto / MTP1 | "
             "auto / MTP2 | auto / MTP3 | auto / best | auto's speculating requests | "
             "auto's draft lengths (k: steps) | same tokens |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        chosen = ", ".join(f"{k}: {n}" for k, n in enumerate(r["auto_draft_lengths"]) if n)
        lines.append(f"| {r['quant']} | {r['agreement']} | {r['plain_tps']:.2f} | {r['mtp1_tps']:.2f} | "
                     f"{r['mtp2_tps']:.2f} | {r['mtp3_tps']:.2f} | {r['auto_tps']:.2f} | "
                     + " | ".join(f"{r[f'auto/{m}']:.3f}" for m in MODES if m != "auto")
                     + f" | **{r['auto/best']:.3f}** ({r['best_other']}) | "
                     f"{r['auto_speculating_requests']} | {chosen or '-'} | {r['same_tokens']} |")
    md = "\n".join(lines) + "\n"
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    (bench.RESULTS / f"{a.out}.md").write_text(md)
    (bench.RESULTS / f"{a.out}.json").write_text(json.dumps({"rows": rows}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
