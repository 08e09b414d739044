"""Two contenders at the same time, one thread each, on the same prompt and model.

On a shared 2-vCPU machine a run's speed drifts by ±5 % with the host's load, so sequential
runs resolve a 3 % difference only after many repeats. Running both contenders at once, one
core each, exposes them to the same conditions at the same moment: one run gives a ratio the
drift hardly moves. (Each has one thread: this measures per-thread work, not thread sync.)
Each contender is pinned to its own CPU, and every further round swaps the CPUs (a vCPU whose
host core is busier would otherwise favour one side); every two rounds the start order flips too
(in an ours/ours control of generation the one loaded and started first was ~5 % slower). The
summary is the geometric mean of the rounds' ratios: use a multiple of 4 rounds.

With ``--threads N`` (N > 1) both contenders run with N threads on all CPUs, taking turns in
time slices: the script stops one process (SIGSTOP) while the other runs, and swaps them every
``--slice-ms``. Each contender's speed is its tokens over the time it was allowed to run (the
sum of its slices until its reply), so load drift slower than a slice pair hits both alike, as
in the pinned mode, while each still runs with all its threads and their synchronisation. The
contender whose turn comes first alternates every round.

    python benches/side_by_side.py ours server                      # ~8k-token prompt tok/s
    python benches/side_by_side.py ours "ours:load_mtp=False"
    python benches/side_by_side.py ours-mtp server-mtp --prompt short --n-predict 256 --rounds 8
    python benches/side_by_side.py ours server --threads 2 --prompt FILE   # time-sliced, -t 2

Contenders: ``ours`` / ``ours-mtp`` (llama_mtp.Model.generate, plain / MTP with ``--n-max`` drafts,
timing from its stats), ``ours:K=V,...`` (the same with extra Model keyword arguments, Python
literals), ``server`` / ``server-mtp`` (llama-server from ``benches/refs.py tools``, with
``--spec-type draft-mtp``, its ``timings``), ``lcp`` (llama-cpp-python from ``benches/refs.py
llama-cpp-python``, ``create_completion``; it reports text, not tokens, so ``same_tokens`` is null
against it). The compared metric is prompt tok/s when one token is generated, generation tok/s
otherwise (``--metric`` overrides; time-sliced: the whole request's running time). Prints a JSON
line per round (both speeds of each, a/b of the metric, whether the two generated the same tokens)
and one with the geometric mean of a/b.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402

CACHE = HERE / ".cache"
PROMPTS = {"long": CACHE / "prompts" / "long-8192.txt", "short": CACHE / "prompts" / "short-1024.txt"}
KINDS = ("ours", "ours-mtp", "server", "server-mtp", "lcp")


class EngineProcess:
    """A loaded engine process whose request ``go()`` runs in a thread (``_run`` fills ``out``),
    that ``run_sliced`` can stop and resume by its pid."""

    engine: bench.Server | bench.JsonWorker
    out: dict[str, Any]

    def _run(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The engine's process (``taskset`` execs, so it is the engine itself)."""
        return self.engine.proc.pid

    def exited(self) -> bool:
        return self.engine.proc.poll() is not None

    def go(self) -> threading.Thread:
        th = threading.Thread(target=self._run)
        th.start()
        return th

    def close(self) -> None:
        self.engine.close()


class Contender(EngineProcess):
    """One engine, loaded and waiting; ``go()`` starts its request in a thread (``out`` holds the
    result once that thread ends).

    Both kinds are bench.py's own: its llama-server command line (``bench.Server``) and its
    llama-mtp worker (``_worker_ours.py``), here with one thread and pinned to one CPU.
    """

    def __init__(self, spec: str, model: Path, prompt: Path, n_predict: int, cfg: bench.Config,
                 cpu: int | None, log: Path, clients: int = 1, kv_unified: bool | None = None) -> None:
        kind, _, args = spec.partition(":")
        if kind not in KINDS or (args and not kind.startswith("ours")):
            raise SystemExit(f"unknown contender {spec!r}: use {', '.join(KINDS)} or ours:K=V,...")
        self.prompt, self.n_predict, self.clients = prompt, n_predict, clients
        # written now, while the contenders are made one after the other (they run at once)
        self.files = self.client_prompts() if clients > 1 else []
        self.mtp = kind.endswith("-mtp")
        self.n_max = cfg.n_max if self.mtp else 0
        self.out: dict[str, Any] = {}
        self.engine: bench.Server | bench.JsonWorker
        if kind.startswith("server"):
            self.engine = bench.Server(model, cfg, self.mtp, log, cpu=cpu, n_parallel=clients,
                                       kv_unified=kv_unified)
            self.text = prompt.read_text(encoding="utf-8")
            return
        if kind == "lcp":
            if clients > 1:
                raise SystemExit("the lcp contender serves one client")
            self.engine = bench.lcp_worker(model, cfg, cpu)
            return
        kwargs = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in args.split(",") if a)}
        python = str(kwargs.pop("python", sys.executable))  # another build of llama-mtp
        if clients > 1:
            kwargs.setdefault("n_parallel", clients)
        if kv_unified is not None:
            kwargs.setdefault("kv_unified", kv_unified)
        # an -mtp contender fixes its speculator at load, as llama-server is started with it
        wcfg = {"model": str(model), "threads": cfg.threads, "n_ctx": cfg.n_ctx,
                "n_batch": cfg.n_batch, "n_ubatch": cfg.n_ubatch, "model_kwargs": kwargs,
                "spec_n_max": self.n_max}
        self.engine = bench.JsonWorker(bench.pin_prefix(cpu) + [
            python, str(HERE / "_worker_ours.py"), json.dumps(wcfg)])

    def client_prompts(self) -> list[Path]:
        """One prompt per concurrent client: the prompt, each under its own first line."""
        files = []
        for i in range(self.clients):
            f = CACHE / "prompts" / f"client{i}-{self.prompt.name}"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"Request {i}.\n" + self.prompt.read_text(encoding="utf-8"), encoding="utf-8")
            files.append(f)
        return files

    def _run(self) -> None:
        r: dict[str, Any]
        if self.clients > 1:
            r = self._run_clients()
        elif isinstance(self.engine, bench.Server):
            reply = self.engine.complete(self.text, self.n_predict)
            r = dict(reply["timings"], tokens=reply.get("tokens") or [])
        else:
            r = self.engine.ask({"prompt_file": str(self.prompt), "n_predict": self.n_predict,
                                 "n_max": self.n_max})
        self.out = {"prompt_tps": r["prompt_n"] / r["prompt_ms"] * 1e3,
                    "gen_tps": r["predicted_n"] / r["predicted_ms"] * 1e3 if r["predicted_ms"] else 0.0,
                    "accept": (r.get("draft_n_accepted", 0) / r["draft_n"]) if r.get("draft_n") else None,
                    "prompt_n": r["prompt_n"], "predicted_n": r["predicted_n"],
                    "tokens": r.get("tokens"),
                    "finished": time.perf_counter()}

    def _run_clients(self) -> dict[str, Any]:
        """``clients`` requests at once: HTTP clients against llama-server's slots, one batch
        call into our engine's slots. Counts are summed; ``tokens`` lists each client's."""
        files = self.files
        if isinstance(self.engine, bench.Server):
            server = self.engine
            replies: list[dict[str, Any]] = [{} for _ in files]

            def client(i: int) -> None:
                replies[i] = server.complete(files[i].read_text(encoding="utf-8"), self.n_predict)

            t0 = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(len(files))]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t0
            tim = [rep["timings"] for rep in replies]
            return {"prompt_n": sum(t["prompt_n"] for t in tim), "prompt_ms": max(t["prompt_ms"] for t in tim),
                    "predicted_n": sum(t["predicted_n"] for t in tim), "predicted_ms": wall * 1e3,
                    "draft_n": sum(t.get("draft_n", 0) for t in tim),
                    "draft_n_accepted": sum(t.get("draft_n_accepted", 0) for t in tim),
                    "tokens": [rep.get("tokens") or [] for rep in replies]}
        assert isinstance(self.engine, bench.JsonWorker)
        return self.engine.ask({"prompt_files": [str(f) for f in files], "n_predict": self.n_predict,
                                "n_max": self.n_max})

class Engine(Protocol):
    """What ``run_sliced`` needs of a contender (``Contender`` is one)."""

    out: dict[str, Any]

    @property
    def pid(self) -> int: ...

    def go(self) -> threading.Thread: ...

    def exited(self) -> bool: ...


def running_until(spans: list[tuple[float, float]], end: float) -> float:
    """Seconds of the turns ``spans`` (start, stop) that fall before ``end`` (the reply)."""
    return sum(min(t1, end) - t0 for t0, t1 in spans if t0 < end)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # it exited (a crash shows in its reply thread)
        pass


def run_sliced(engines: Sequence[Engine], slice_s: float, first: int) -> list[float]:
    """Send every engine's request, then let the processes run in turns of ``slice_s`` (the others
    stopped), in order from ``first``, until all have replied; return each one's running seconds
    up to its reply (its ``out["finished"]``). Two engines take turns; more, one after the other."""
    for c in engines:
        _signal(c.pid, signal.SIGSTOP)
    threads: list[threading.Thread] = []
    turns: list[list[tuple[float, float]]] = [[] for _ in engines]
    turn = first % len(engines)
    try:
        threads = [c.go() for c in engines]
        while any(th.is_alive() for th in threads):
            live = [i for i, th in enumerate(threads) if th.is_alive()]
            i = min(live, key=lambda j: (j - turn) % len(engines))  # the next live one from turn
            _signal(engines[i].pid, signal.SIGCONT)
            t0 = time.perf_counter()
            threads[i].join(slice_s)  # returns early when the reply is in
            if not engines[i].exited():
                _signal(engines[i].pid, signal.SIGSTOP)
            turns[i].append((t0, time.perf_counter()))
            turn = (i + 1) % len(engines)
    finally:
        for c in engines:  # never leave a process stopped
            if not c.exited():
                _signal(c.pid, signal.SIGCONT)
    return [running_until(spans, c.out.get("finished", 0.0)) for c, spans in zip(engines, turns)]


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
                    help="compared speed (default: prompt when --n-predict is 1, else gen; "
                         "with --threads > 1 always the whole request's running time)")
    ap.add_argument("--n-ctx", type=int, default=10240)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per contender: 1 = both at once, pinned to one CPU each; "
                         "more = time-sliced turns on all CPUs")
    ap.add_argument("--slice-ms", type=float, default=200.0, help="turn length with --threads > 1")
    ap.add_argument("--clients", type=int, default=1,
                    help="concurrent requests per contender (llama-server -np N with N HTTP clients; "
                         "ours: n_parallel N, the N prompts in one generate call); the compared "
                         "metric is then the aggregate tokens over the running time")
    ap.add_argument("--kv-unified", choices=("on", "off"), default=None,
                    help="-kvu / -no-kvu for both (default: each one's own default)")
    ap.add_argument("--rounds", type=int, default=4,
                    help="rounds: CPUs swapped each time, start order every two (use multiples of 4)")
    ap.add_argument("--out", default=None,
                    help="also save benches/results/OUT.json (rounds, machine, command) and OUT.md")
    a = ap.parse_args()
    sliced = a.threads > 1
    metric = "request" if sliced else a.metric or ("prompt" if a.n_predict == 1 else "gen")
    prompt = PROMPTS.get(a.prompt, Path(a.prompt))
    if not prompt.is_file():
        raise SystemExit(f"no prompt file {prompt}: run benches/bench.py once to write it")
    if a.threads < 1 or a.slice_ms <= 0:
        raise SystemExit("--threads must be >= 1 and --slice-ms > 0")
    cfg = bench.Config(threads=a.threads, n_ctx=a.n_ctx, n_batch=2048, n_ubatch=512,
                       n_max=a.n_max, pld_tokens=0)
    log = Path(tempfile.gettempdir()) / "side_by_side-server.log"
    ratios = []
    rows: list[dict[str, Any]] = []
    meta = {"command": shlex.join([sys.executable, *sys.argv]), "machine": bench.machine(),
            "model": a.model.name, "prompt": prompt.name, "threads": a.threads, "clients": a.clients,
            "slice_ms": a.slice_ms if sliced else None, "load_start": bench.loadavg()}
    for r in range(a.rounds):
        cpus: tuple[int | None, int | None] = (None, None) if sliced else \
            (0, 1) if r % 2 == 0 else (1, 0)
        # the contender loaded and started first ran ~5 % slower in an ours/ours control
        # (generation), so the order flips every two rounds: CPUs x order, balanced every four
        # (time-sliced: the first turn alternates every round, the load order every two)
        b_first = r // 2 % 2 == 1
        specs = [(a.b, cpus[1]), (a.a, cpus[0])] if b_first else [(a.a, cpus[0]), (a.b, cpus[1])]
        pair: list[Contender] = []
        running: list[float] = []
        try:
            kvu = None if a.kv_unified is None else a.kv_unified == "on"
            for spec, cpu in specs:
                pair.append(Contender(spec, a.model, prompt, a.n_predict, cfg, cpu, log, a.clients, kvu))
            if b_first:
                pair.reverse()
            if sliced:
                running = run_sliced(pair, a.slice_ms / 1e3, first=r % 2)
            else:
                for th in [c.go() for c in pair]:
                    th.join()
        finally:
            for c in pair:
                c.close()
        x, y = (c.out for c in pair)
        if not x or not y:
            raise SystemExit("a contender failed (see the traceback above)")
        row: dict[str, Any] = {"round": r + 1, "a": a.a, "b": a.b}
        phase = "prompt" if a.n_predict == 1 else "predicted"
        if sliced:
            # the same request on both: speed a/b is time b/a
            ratios.append(running[1] / running[0])
            row.update({"threads": a.threads, "first_turn": "ab"[r % 2],
                        "a_running_s": round(running[0], 2), "b_running_s": round(running[1], 2),
                        # the phase that dominates: prompt with one token, else generation
                        # (the short prompt counted in, alike on both sides)
                        f"a_{phase}_tps_running": round(x[f"{phase}_n"] / running[0], 2),
                        f"b_{phase}_tps_running": round(y[f"{phase}_n"] / running[1], 2)})
        else:
            ratios.append(x[f"{metric}_tps"] / y[f"{metric}_tps"])
            row.update({"a_cpu": cpus[0], "b_cpu": cpus[1],
                        # pinned, so the first to finish frees no CPU, only memory bandwidth
                        "a_finished_after_b_s": round(x["finished"] - y["finished"], 1)})
        row.update({"loaded_first": "b" if b_first else "a",
                    "prompt_n": x["prompt_n"], "n_predict": a.n_predict,
                    "a_prompt_tps": round(x["prompt_tps"], 2),
                    "b_prompt_tps": round(y["prompt_tps"], 2),
                    "a_gen_tps": round(x["gen_tps"], 2), "b_gen_tps": round(y["gen_tps"], 2),
                    "a_accept": x["accept"], "b_accept": y["accept"],
                    "same_tokens": None if x["tokens"] is None or y["tokens"] is None
                    else x["tokens"] == y["tokens"],
                    f"a/b {metric}": round(ratios[-1], 4)})
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"a": a.a, "b": a.b, "threads": a.threads,
               "metric": "request running time b/a" if sliced else f"{metric} tok/s",
               "rounds": len(ratios),
               "a/b geomean": round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 4),
               "a/b min": round(min(ratios), 4), "a/b max": round(max(ratios), 4)}
    print(json.dumps(summary))
    if a.out:
        meta["load_end"] = bench.loadavg()
        bench.RESULTS.mkdir(parents=True, exist_ok=True)
        (bench.RESULTS / f"{a.out}.json").write_text(
            json.dumps({"meta": meta, "rounds": rows, "summary": summary}, indent=1))
        (bench.RESULTS / f"{a.out}.md").write_text(markdown(meta, rows, summary, metric))
    return 0


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], summary: dict[str, Any],
             metric: str) -> str:
    """The rounds as a Markdown table, with the machine and the command line."""
    m = meta["machine"]
    sliced = meta["slice_ms"] is not None
    how = (f"time-sliced turns of {meta['slice_ms']:g} ms, {meta['threads']} threads each"
           if sliced else "at the same time, one thread each, pinned to one CPU each")
    lines = [f"# {summary['a']} vs {summary['b']} side by side ({how})", "",
             f"- command: `{meta['command']}`",
             f"- machine: {m.get('cpu')}, {m.get('cpus')} CPUs, {m.get('mem_gib')} GiB, "
             f"{m.get('platform')}; load {meta['load_start']} at the start, "
             f"{meta.get('load_end')} at the end",
             f"- model `{meta['model']}`, prompt `{meta['prompt']}`, "
             f"{meta.get('clients', 1)} concurrent client(s) per contender", ""]
    if sliced:
        lines += ["| round | first turn | loaded first | a running s | b running s | "
                  "a tok/s | b tok/s | same tokens | a/b speed |", "|---:|---|---|---:|---:|---:|---:|---|---:|"]
        phase = "prompt" if rows and rows[0]["n_predict"] == 1 else "predicted"
        lines += [f"| {r['round']} | {r['first_turn']} | {r['loaded_first']} | "
                  f"{r['a_running_s']} | {r['b_running_s']} | {r[f'a_{phase}_tps_running']} | "
                  f"{r[f'b_{phase}_tps_running']} | {r['same_tokens']} | "
                  f"{r['a/b ' + metric]} |" for r in rows]
    else:
        lines += ["| round | a CPU | loaded first | a prompt tok/s | b prompt tok/s | "
                  "a gen tok/s | b gen tok/s | same tokens | a/b |",
                  "|---:|---:|---|---:|---:|---:|---:|---|---:|"]
        lines += [f"| {r['round']} | {r['a_cpu']} | {r['loaded_first']} | {r['a_prompt_tps']} | "
                  f"{r['b_prompt_tps']} | {r['a_gen_tps']} | {r['b_gen_tps']} | "
                  f"{r['same_tokens']} | {r['a/b ' + metric]} |" for r in rows]
    for side in ("a", "b"):
        rates = sorted({round(r[f"{side}_accept"], 4) for r in rows if r[f"{side}_accept"] is not None})
        if rates:
            lines += ["", f"Draft acceptance of {side} ({summary[side]}) per round: "
                      f"{', '.join(map(str, rates))}"]
    lines += ["", f"**a/b ({summary['metric']}): geometric mean {summary['a/b geomean']} over "
              f"{summary['rounds']} rounds (min {summary['a/b min']}, max {summary['a/b max']})**",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
