"""Two prompt-processing contenders at the same time, one thread each, on the same long prompt.

On a shared 2-vCPU machine a run's speed drifts by ±5 % with the host's load, so sequential
runs resolve a 3 % difference only after many repeats. Running both contenders at once, one
core each, exposes them to the same conditions at the same moment: one run gives a ratio the
drift hardly moves. (Each has one thread: this measures per-thread work, not thread sync.)
Each contender is pinned to its own CPU, and every further round swaps the CPUs (a vCPU whose
host core is busier would otherwise favour one side); the summary is the geometric mean of the
rounds' ratios.

    python benches/side_by_side.py ours server
    python benches/side_by_side.py ours "ours:load_mtp=False"

Contenders: ``ours`` (llama_mtp.Model.generate, prompt timing from its stats), ``ours:K=V,...``
(the same with extra Model keyword arguments, Python literals), ``server`` (llama-server from
``benches/refs.py tools``, its ``timings``). Prints a JSON line per round (prompt tok/s of each,
a/b) and one with the geometric mean of a/b.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
_OURS = r"""
import json, sys
from llama_mtp import Model, SamplingParams
cfg = json.loads(sys.argv[1])
text = open(cfg["prompt"], encoding="utf-8").read()
m = Model(cfg["model"], n_threads=1, n_threads_batch=1, n_ctx=cfg["n_ctx"], n_batch=2048,
          n_ubatch=512, **cfg["kwargs"])
toks = m.tokenize(text, add_special=True, parse_special=True)
print("ready", flush=True)
sys.stdin.readline()
s = m.generate(toks, SamplingParams.greedy(max_tokens=1), cache_prompt=False).stats
print(json.dumps({"prompt_n": s.prompt_n, "prompt_ms": s.prompt_ms}), flush=True)
"""


def _pin(cpu: int) -> list[str]:
    """``taskset`` prefix that keeps a process (and its threads) on one CPU."""
    return ["taskset", "-c", str(cpu)] if sys.platform.startswith("linux") else []


class Contender:
    """One engine, loaded and waiting; ``go()`` starts its prompt, ``result()`` waits for it."""

    def __init__(self, spec: str, model: Path, prompt: Path, n_ctx: int, cpu: int) -> None:
        self.spec = spec
        self.out: dict[str, float] = {}
        self.proc: subprocess.Popen[str]
        if spec == "server":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
            self.proc = subprocess.Popen(
                _pin(cpu) + [str(CACHE / "tools" / "bin" / "llama-server"), "-m", str(model), "--host",
                 "127.0.0.1", "--port", str(self.port), "-t", "1", "-tb", "1", "-c", str(n_ctx),
                 "-b", "2048", "-ub", "512", "-np", "1", "-fa", "auto", "--no-webui",
                 "--no-warmup"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
            self.text = prompt.read_text(encoding="utf-8")
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            return
        name, _, args = spec.partition(":")
        if name != "ours":
            raise SystemExit(f"unknown contender {spec!r}: use ours, ours:K=V,... or server")
        kwargs = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in args.split(",") if a)}
        cfg = {"model": str(model), "prompt": str(prompt), "n_ctx": n_ctx, "kwargs": kwargs}
        self.proc = subprocess.Popen(_pin(cpu) + [sys.executable, "-c", _OURS, json.dumps(cfg)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=str(HERE))
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline().startswith("ready"):
            raise SystemExit(f"{spec} failed to load")

    def _run(self) -> None:
        if self.spec == "server":
            body = json.dumps({"prompt": self.text, "n_predict": 1, "temperature": 0, "top_k": 1,
                               "cache_prompt": False}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{self.port}/completion", body,
                                         {"Content-Type": "application/json"})
            t = json.loads(urllib.request.urlopen(req, timeout=7200).read())["timings"]
            self.out = {"prompt_n": t["prompt_n"], "prompt_ms": t["prompt_ms"]}
        else:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            self.out = json.loads(self.proc.stdout.readline())
        self.out["finished"] = time.perf_counter()

    def go(self) -> threading.Thread:
        th = threading.Thread(target=self._run)
        th.start()
        return th

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--model", type=Path, default=CACHE / "models" / "bench-v110080-Q4_K_M-a0.8.gguf")
    ap.add_argument("--prompt", type=Path, default=CACHE / "prompts" / "long-8192.txt")
    ap.add_argument("--n-ctx", type=int, default=10240)
    ap.add_argument("--rounds", type=int, default=2, help="rounds, CPUs swapped each time")
    a = ap.parse_args()
    ratios = []
    for r in range(a.rounds):
        cpus = (0, 1) if r % 2 == 0 else (1, 0)
        pair = [Contender(s, a.model, a.prompt, a.n_ctx, cpu) for s, cpu in zip((a.a, a.b), cpus)]
        try:
            for th in [c.go() for c in pair]:
                th.join()
        finally:
            for c in pair:
                c.close()
        tps = [c.out["prompt_n"] / c.out["prompt_ms"] * 1000 for c in pair]
        ratios.append(tps[0] / tps[1])
        print(json.dumps({"round": r + 1, "a": a.a, "a_cpu": cpus[0], "b": a.b, "b_cpu": cpus[1],
                          "prompt_n": pair[0].out["prompt_n"], "a_tps": round(tps[0], 2),
                          "b_tps": round(tps[1], 2), "a/b": round(ratios[-1], 4),
                          # the one that finished first left the other a CPU to itself
                          "a_finished_after_b_s": round(pair[0].out["finished"] - pair[1].out["finished"], 1)}),
              flush=True)
    print(json.dumps({"a": a.a, "b": a.b, "rounds": len(ratios),
                      "a/b geomean": round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
