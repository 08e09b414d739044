"""Concurrent clients: our engine's aggregate throughput against llama-server ``-np N`` from the
same llama.cpp tree, at 1, 2, 4 and 8 clients, plain and with MTP.

Every cell is one ``side_by_side.py --threads T --clients N`` run (time-sliced turns, both on all
CPUs; each contender's speed is its tokens over its own running time), so the ratio of a cell is
measured in one run against the reference under the same conditions. Also reports our own
N-client aggregate against our one-client rate.

    python benches/concurrency.py --out concurrency-t2            # the full table (~1 h here)
    python benches/concurrency.py --clients 1,4 --modes plain --rounds 2

Writes benches/results/OUT.md (the table, the command, the machine) and OUT.json; each cell's own
side-by-side files are OUT-<mode>-c<N>.json/.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402

MODES = {"plain": ("ours", "server"), "mtp": ("ours-mtp", "server-mtp")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--modes", default="plain,mtp")
    ap.add_argument("--n-predict", type=int, default=48, help="tokens per request")
    ap.add_argument("--n-max", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--prompt", default=None, help="prompt file (default: a short one, written once)")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--kv-unified", choices=("on", "off"), default="on")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    prompt = Path(a.prompt) if a.prompt else bench.PROMPTS / "concurrency-short.txt"
    if not a.prompt:
        prompt.parent.mkdir(parents=True, exist_ok=True)
        prompt.write_text("Once upon a time, in an old harbour town called Kestrel Bay, an elderly "
                          "clockmaker opened his tiny shop at dawn. Tell the story of that day.",
                          encoding="utf-8")
    rows: list[dict[str, Any]] = []
    for mode in a.modes.split(","):
        ours, server = MODES[mode]
        for n in [int(c) for c in a.clients.split(",")]:
            name = f"{a.out}-{mode}-c{n}"
            cmd = [sys.executable, str(HERE / "side_by_side.py"), ours, server, "--threads", str(a.threads),
                   "--clients", str(n), "--n-predict", str(a.n_predict), "--n-max", str(a.n_max),
                   "--rounds", str(a.rounds), "--prompt", str(prompt), "--kv-unified", a.kv_unified,
                   "--n-ctx", str(max(4096, n * 1024)), "--out", name]
            if a.model is not None:
                cmd += ["--model", str(a.model)]
            print("+", shlex.join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            doc = json.loads((bench.RESULTS / f"{name}.json").read_text())
            rounds = doc["rounds"]
            ours_tps = [r["a_predicted_tps_running"] for r in rounds]
            srv_tps = [r["b_predicted_tps_running"] for r in rounds]
            rows.append({"mode": mode, "clients": n, "ratio": doc["summary"]["a/b geomean"],
                         "ratio_min": doc["summary"]["a/b min"], "ratio_max": doc["summary"]["a/b max"],
                         "ours_tps": geomean(ours_tps), "server_tps": geomean(srv_tps),
                         "same_tokens": all(r["same_tokens"] for r in rounds),
                         "ours_accept": rounds[0].get("a_accept"), "server_accept": rounds[0].get("b_accept")})
    base = {r["mode"]: r["ours_tps"] for r in rows if r["clients"] == 1}
    lines = [f"# Concurrent clients: llama-mtp vs llama-server -np N (time-sliced, -t {a.threads})", "",
             f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
             f"- machine: {bench.machine()}", f"- {a.n_predict} tokens per request, greedy; MTP n_max {a.n_max}; "
             f"KV unified {a.kv_unified} for both; {a.rounds} rounds per cell; aggregate tok/s = tokens of "
             "all clients over each contender's own running time", "",
             "| mode | clients | ours tok/s | llama-server tok/s | ours / server (min-max) | ours vs our 1 client | same tokens |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        scale = r["ours_tps"] / base[r["mode"]] if base.get(r["mode"]) else float("nan")
        lines.append(f"| {r['mode']} | {r['clients']} | {r['ours_tps']:.2f} | {r['server_tps']:.2f} | "
                     f"{r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) | x{scale:.2f} | "
                     f"{r['same_tokens']} |")
    md = "\n".join(lines) + "\n"
    (bench.RESULTS / f"{a.out}.md").write_text(md)
    (bench.RESULTS / f"{a.out}.json").write_text(json.dumps({"rows": rows}, indent=1))
    print(md)
    return 0


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else 0.0


if __name__ == "__main__":
    sys.exit(main())
