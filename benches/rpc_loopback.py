"""Generation speed of a model spread over RPC servers on this machine (loopback), against the
same model run locally.

Contenders, loaded once each and run interleaved (rotated order, greedy, ``cache_prompt=False``,
every output checked against the local run's tokens):

* ``local``: the whole model in this process (``-t THREADS``), weights memory-mapped (the default);
* ``local, no mmap``: the same with the weights read into allocated memory, as an RPC server
  holds them (on this machine the kind of memory alone moved the small model's speed);
* ``rpc x2 + cpu``: two ``llama-mtp rpc-server`` processes (``-t THREADS`` each) hold the last
  two thirds of the layers (``n_gpu_layers``), this process the first third -- three devices,
  one after the other for every token (layer split);
* ``rpc x1 all``: one server holds every layer; this process only embeds the tokens and
  samples: the transport's own cost.

    python benches/rpc_loopback.py --preset bench --threads 1 --reps 5 --out benches/results/rpc-loopback

Writes ``OUT.md`` and ``OUT.json`` (command line, machine, load average, every run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench  # benches/bench.py: models, machine facts

PROMPT = "Once upon a time"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_mtp.rpc", "--port", str(port), "-t", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"rpc-server on port {port} did not start")


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of this process and of the server processes ``pids``."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    total = me.ru_utime + me.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="bench", help="synthetic model preset (tiny, bench)")
    ap.add_argument("--quant", default="Q4_K_M")
    ap.add_argument("--vocab", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-predict", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "rpc-loopback")
    a = ap.parse_args(argv)

    from llama_mtp import Model, SamplingParams

    path = bench.ensure_model(a.preset, a.quant, 0.8, a.vocab)
    servers = [start_server(a.threads) for _ in range(2)]
    endpoints = [e for _, e in servers]
    meta: dict[str, Any] = {"command": "python benches/rpc_loopback.py " + shlex.join(argv or sys.argv[1:]),
                            "machine": bench.machine(), "load_start": bench.loadavg(), "model": path.name,
                            "threads": a.threads, "n_predict": a.n_predict, "reps": a.reps}
    runs: list[dict[str, Any]] = []
    try:
        with Model(path, vocab_only=True) as vocab:
            count = vocab.metadata.get(f"{vocab.arch}.block_count", 0)
        block_count = count if isinstance(count, int) else 0
        ngl = round((block_count + 1) * 2 / 3)  # blocks (MTP included) + the output layer
        common: dict[str, Any] = dict(n_ctx=1024, n_threads=a.threads)
        models = {
            "local": Model(path, **common),
            "local, no mmap": Model(path, use_mmap=False, **common),
            "rpc x2 + cpu": Model(path, rpc_servers=endpoints, n_gpu_layers=ngl, **common),
            "rpc x1 all": Model(path, rpc_servers=endpoints[:1], n_gpu_layers=-1, **common),
        }
        meta["ngl_split"] = ngl
        meta["devices"] = {k: [d.description for d in m.devices] for k, m in models.items()}
        params = SamplingParams.greedy(max_tokens=a.n_predict, ignore_eos=True)
        reference = models["local"].generate(PROMPT, params, cache_prompt=False).tokens
        names = list(models)
        for rep in range(a.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                cpu0 = cpu_seconds([p.pid for p, _ in servers])
                out = models[name].generate(PROMPT, params, cache_prompt=False)
                cpu = cpu_seconds([p.pid for p, _ in servers]) - cpu0
                s = out.stats
                runs.append({"contender": name, "rep": rep, "gen_tps": s.predicted_per_second,
                             "prompt_tps": s.prompt_per_second, "predicted_n": s.predicted_n,
                             "cpu_ms_per_token": 1000 * cpu / max(1, s.predicted_n),
                             "correct": out.tokens == reference, "load": bench.loadavg()})
                print(f"rep {rep} {name:14s} {s.predicted_per_second:8.2f} tok/s  "
                      f"{'ok' if out.tokens == reference else 'MISMATCH'}", flush=True)
        for m in models.values():
            m.close()
    finally:
        for proc, _ in servers:
            proc.kill()
            proc.wait()
    meta["load_end"] = bench.loadavg()

    rows = []
    base = statistics.median(r["gen_tps"] for r in runs if r["contender"] == "local")
    for name in names:
        gen = [r["gen_tps"] for r in runs if r["contender"] == name]
        pp = [r["prompt_tps"] for r in runs if r["contender"] == name]
        med = statistics.median(gen)
        rows.append({"contender": name, "devices": meta["devices"][name], "gen_tps_median": med,
                     "gen_tps_min": min(gen), "gen_tps_max": max(gen), "ratio_vs_local": med / base,
                     "ms_per_token": 1000 / med, "extra_ms_per_token": 1000 / med - 1000 / base,
                     "ratio_vs_no_mmap": med / statistics.median(
                         r["gen_tps"] for r in runs if r["contender"] == "local, no mmap"),
                     "prompt_tps_median": statistics.median(pp),
                     "cpu_ms_per_token": statistics.median(r["cpu_ms_per_token"] for r in runs
                                                           if r["contender"] == name),
                     "all_correct": all(r["correct"] for r in runs if r["contender"] == name)})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "runs": runs}, indent=1))
    md = [f"# RPC split vs local, loopback ({path.name})", "",
          f"`{meta['command']}`", "",
          f"{meta['machine'].get('cpu')}, {meta['machine'].get('cpus')} CPUs, load average "
          f"{meta['load_start']} -> {meta['load_end']}; {a.threads} thread(s) per process; "
          f"{a.n_predict} tokens after a {len(PROMPT.split())}-word prompt, greedy, {a.reps} interleaved runs; "
          f"split: `n_gpu_layers={ngl}` of {block_count + 1} offloadable layers.", "",
          "| contender | devices | generation tok/s, median (min-max) | vs local | vs local, no mmap | ms/token "
          "| extra ms/token | CPU ms/token, all processes | prompt tok/s | tokens = local |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r['contender']} | {', '.join(r['devices']) or 'CPU'} | {r['gen_tps_median']:.2f} "
                  f"({r['gen_tps_min']:.2f}-{r['gen_tps_max']:.2f}) | {r['ratio_vs_local']:.3f} | "
                  f"{r['ratio_vs_no_mmap']:.3f} | "
                  f"{r['ms_per_token']:.2f} | {r['extra_ms_per_token']:+.2f} | {r['cpu_ms_per_token']:.2f} | "
                  f"{r['prompt_tps_median']:.1f} | "
                  f"{'yes' if r['all_correct'] else 'NO'} |")
    a.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(r["all_correct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
