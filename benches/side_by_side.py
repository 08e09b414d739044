"""Two contenders at the same time, one thread each, on the same prompt and model.

On a shared 2-vCPU machine a run's speed drifts by ±5 % with the host's load, so sequential
runs resolve a 3 % difference only after many repeats. Running both contenders at once, one
core each, exposes them to the same conditions at the same moment: one run gives a ratio the
drift hardly moves. (Each has one thread: this measures per-thread work, not thread sync.)
Each contender is pinned to its own CPU, and every further round swaps the CPUs (a vCPU whose
host core is busier would otherwise favour one side); every two rounds the start order flips too
(in an ours/ours control of generation the one loaded and started first was ~5 % slower). The
summary is the geometric mean of the rounds' ratios: use a multiple of 4 rounds.

    python benches/side_by_side.py ours server                      # ~8k-token prompt tok/s
    python benches/side_by_side.py ours "ours:load_mtp=False"
    python benches/side_by_side.py ours-mtp server-mtp --prompt short --n-predict 256 --rounds 8

Contenders: ``ours`` / ``ours-mtp`` (llama_mtp.Model.generate, plain / MTP with ``--n-max``
drafts, timing from its stats), ``ours:K=V,...`` (the same with extra Model keyword arguments,
Python literals), ``server`` / ``server-mtp`` (llama-server from ``benches/refs.py tools``, with
``--spec-type draft-mtp``, its ``timings``). The compared metric is prompt tok/s when one token
is generated, generation tok/s otherwise (``--metric`` overrides). Prints a JSON line per round
(both speeds of each, a/b of the metric, whether the two generated the same tokens) and one with
the geometric mean of a/b.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402

CACHE = HERE / ".cache"
PROMPTS = {"long": CACHE / "prompts" / "long-8192.txt", "short": CACHE / "prompts" / "short-1024.txt"}
KINDS = ("ours", "ours-mtp", "server", "server-mtp")


class Contender:
    """One engine, loaded and waiting; ``go()`` starts its request in a thread (``out`` holds the
    result once that thread ends).

    Both kinds are bench.py's own: its llama-server command line (``bench.Server``) and its
    llama-mtp worker (``_worker_ours.py``), here with one thread and pinned to one CPU.
    """

    def __init__(self, spec: str, model: Path, prompt: Path, n_predict: int, cfg: bench.Config,
                 cpu: int, log: Path) -> None:
        kind, _, args = spec.partition(":")
        if kind not in KINDS or (args and not kind.startswith("ours")):
            raise SystemExit(f"unknown contender {spec!r}: use {', '.join(KINDS)} or ours:K=V,...")
        self.prompt, self.n_predict = prompt, n_predict
        self.mtp = kind.endswith("-mtp")
        self.n_max = cfg.n_max if self.mtp else 0
        self.out: dict[str, Any] = {}
        self.engine: bench.Server | bench.JsonWorker
        if kind.startswith("server"):
            self.engine = bench.Server(model, cfg, self.mtp, log, cpu=cpu)
            self.text = prompt.read_text(encoding="utf-8")
            return
        kwargs = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in args.split(",") if a)}
        wcfg = {"model": str(model), "threads": cfg.threads, "n_ctx": cfg.n_ctx,
                "n_batch": cfg.n_batch, "n_ubatch": cfg.n_ubatch, "model_kwargs": kwargs}
        self.engine = bench.JsonWorker(bench.pin_prefix(cpu) + [
            sys.executable, str(HERE / "_worker_ours.py"), json.dumps(wcfg)])

    def _run(self) -> None:
        r: dict[str, Any]
        if isinstance(self.engine, bench.Server):
            reply = self.engine.complete(self.text, self.n_predict)
            r = dict(reply["timings"], tokens=reply.get("tokens") or [])
        else:
            r = self.engine.ask({"prompt_file": str(self.prompt), "n_predict": self.n_predict,
                                 "n_max": self.n_max})
        self.out = {"prompt_tps": r["prompt_n"] / r["prompt_ms"] * 1e3,
                    "gen_tps": r["predicted_n"] / r["predicted_ms"] * 1e3 if r["predicted_ms"] else 0.0,
                    "accept": (r.get("draft_n_accepted", 0) / r["draft_n"]) if r.get("draft_n") else None,
                    "prompt_n": r["prompt_n"], "tokens": r["tokens"],
                    "finished": time.perf_counter()}

    def go(self) -> threading.Thread:
        th = threading.Thread(target=self._run)
        th.start()
        return th

    def close(self) -> None:
        self.engine.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--model", type=Path, default=CACHE / "models" / "bench-v110080-Q4_K_M-a0.8.gguf")
    ap.add_argument("--prompt", default="long",
                    help="'long' (~8k tokens), 'short' (bench.py's short prompt) or a text file")
    ap.add_argument("--n-predict", type=int, default=1, help="tokens to generate (greedy)")
    ap.add_argument("--n-max", type=int, default=2, help="MTP drafts per step (-mtp contenders)")
    ap.add_argument("--metric", choices=("prompt", "gen"), default=None,
                    help="compared speed (default: prompt when --n-predict is 1, else gen)")
    ap.add_argument("--n-ctx", type=int, default=10240)
    ap.add_argument("--rounds", type=int, default=4,
                    help="rounds: CPUs swapped each time, start order every two (use multiples of 4)")
    a = ap.parse_args()
    metric = a.metric or ("prompt" if a.n_predict == 1 else "gen")
    prompt = PROMPTS.get(a.prompt, Path(a.prompt))
    if not prompt.is_file():
        raise SystemExit(f"no prompt file {prompt}: run benches/bench.py once to write it")
    cfg = bench.Config(threads=1, n_ctx=a.n_ctx, n_batch=2048, n_ubatch=512, n_max=a.n_max,
                       pld_tokens=0)
    log = Path(tempfile.gettempdir()) / "side_by_side-server.log"
    ratios = []
    for r in range(a.rounds):
        cpus = (0, 1) if r % 2 == 0 else (1, 0)
        # the contender loaded and started first ran ~5 % slower in an ours/ours control
        # (generation), so the order flips every two rounds: CPUs x order, balanced every four
        b_first = r // 2 % 2 == 1
        specs = [(a.b, cpus[1]), (a.a, cpus[0])] if b_first else [(a.a, cpus[0]), (a.b, cpus[1])]
        pair: list[Contender] = []
        try:
            for spec, cpu in specs:
                pair.append(Contender(spec, a.model, prompt, a.n_predict, cfg, cpu, log))
            for th in [c.go() for c in pair]:
                th.join()
        finally:
            for c in pair:
                c.close()
        if b_first:
            pair.reverse()
        x, y = (c.out for c in pair)
        if not x or not y:
            raise SystemExit("a contender failed (see the traceback above)")
        ratios.append(x[f"{metric}_tps"] / y[f"{metric}_tps"])
        print(json.dumps({"round": r + 1, "a": a.a, "a_cpu": cpus[0], "b": a.b, "b_cpu": cpus[1],
                          "first": "b" if b_first else "a",
                          "prompt_n": x["prompt_n"], "n_predict": a.n_predict,
                          "a_prompt_tps": round(x["prompt_tps"], 2),
                          "b_prompt_tps": round(y["prompt_tps"], 2),
                          "a_gen_tps": round(x["gen_tps"], 2), "b_gen_tps": round(y["gen_tps"], 2),
                          "a_accept": x["accept"], "b_accept": y["accept"],
                          "same_tokens": x["tokens"] == y["tokens"],
                          f"a/b {metric}": round(ratios[-1], 4),
                          # pinned, so the first to finish frees no CPU, only memory bandwidth
                          "a_finished_after_b_s": round(x["finished"] - y["finished"], 1)}),
              flush=True)
    print(json.dumps({"a": a.a, "b": a.b, "metric": f"{metric} tok/s", "rounds": len(ratios),
                      "a/b geomean": round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
