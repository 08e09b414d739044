"""The model card's table on one GPU: llama-mtp vs llama-server / llama-cli from the same build.

Run by benches/gpu_bench.sh (which builds and stages everything); by hand:

    PYTHONPATH=<stage> python benches/gpu_bench.py --model M.gguf --tools <build>/bin --out DIR

Rows: prompt (short / ~8k / ~32k tokens) x mode (plain, MTP n_max 1/2/3). Columns per engine:
prompt tok/s, generation tok/s, draft acceptance. One timed run per cell after one warm-up per
engine and mode (the whole script has an 8-minute budget on an H200); a cell that would not
fit before ``--deadline`` is skipped and marked so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import Config, Server, machine, prompt_text  # noqa: E402

_CLI_TIMINGS = re.compile(r"\[ Prompt: ([\d.]+) t/s \| Generation: ([\d.]+) t/s \]")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tools", required=True, help="directory holding llama-server, llama-cli")
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=0.0, help="epoch seconds; 0: none")
    ap.add_argument("--prompts", default="short,8192,30000",
                    help="'short' and/or prompt lengths in tokens")
    ap.add_argument("--modes", default="0,2,1,3",
                    help="MTP n_max per mode (0: plain), in the order they run: the card's main "
                         "rows first, so a tight budget drops the others")
    ap.add_argument("--n-predict", type=int, default=128, help="tokens generated (short prompt)")
    ap.add_argument("--long-predict", type=int, default=32, help="tokens generated (long prompts)")
    ap.add_argument("--n-ctx", type=int, default=32768)
    ap.add_argument("--ngl", type=int, default=999)
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for every engine (0: min(8, CPUs))")
    ap.add_argument("--cli-modes", default="0,2", help="modes llama-cli runs (short prompt only)")
    ap.add_argument("--build-info", default="{}", help="JSON recorded with the results")
    a = ap.parse_args(argv)

    stage = os.environ.get("LLAMA_MTP_STAGE")
    if stage:
        # an editable install's import hook would win over PYTHONPATH: use the staged build
        sys.meta_path[:] = [f for f in sys.meta_path
                            if type(f).__name__ != "ScikitBuildRedirectingFinder"]
        sys.path.insert(0, stage)
    import llama_mtp
    from llama_mtp import Model, SamplingParams, Speculator, _core, system_info
    if stage and not Path(_core.__file__).resolve().is_relative_to(Path(stage).resolve()):
        raise SystemExit(f"llama_mtp._core came from {_core.__file__}, not the stage {stage}")
    print(f"llama_mtp from {llama_mtp.__file__}, _core {_core.__file__}", flush=True)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tools = Path(a.tools)
    modes = [int(m) for m in a.modes.split(",")]
    prompts_spec = a.prompts.split(",")
    t_start = time.time()

    def left() -> float:
        return a.deadline - time.time() if a.deadline else 1e9

    gpu = a.ngl != 0
    a.threads = a.threads or min(8, os.cpu_count() or 1)
    model = Model(a.model, n_gpu_layers=-1 if gpu else 0, n_ctx=a.n_ctx, n_batch=2048,
                  n_ubatch=512, n_threads=a.threads, n_threads_batch=a.threads)
    t_load = time.time() - t_start
    prompts: dict[str, tuple[str, int]] = {}
    for p in prompts_spec:
        text = prompt_text("short" if p == "short" else "long", 0 if p == "short" else int(p),
                           lambda s: model.tokenize(s))
        prompts[p] = (text, len(model.tokenize(text, add_special=True, parse_special=True)))
    pfiles = {}
    for p, (text, _) in prompts.items():
        pf = out / f"prompt-{p}.txt"
        pf.write_text(text, encoding="utf-8")
        pfiles[p] = pf

    results: list[dict[str, Any]] = []
    cost: dict[tuple[str, str], float] = {}  # (engine, prompt) -> seconds of the last run

    def fits(engine: str, p: str) -> bool:
        need = cost.get((engine, p), 5.0 if p == "short" else 20.0)
        return left() > need + 15.0

    def record(engine: str, p: str, mode: int, **kw: Any) -> None:
        row = {"engine": engine, "prompt": p, "prompt_tokens": prompts[p][1], "n_max": mode}
        row.update(kw)
        results.append(row)
        print(json.dumps(row), flush=True)

    cfg_base = dict(threads=a.threads, n_ctx=a.n_ctx, n_batch=2048, n_ubatch=512,
                    pld_tokens=0)
    for mode in modes:
        spec = Speculator.mtp(mode) if mode else None
        n_pred = {p: (a.n_predict if p == "short" else a.long_predict) for p in prompts}
        # ours (warm-up, then one run per prompt) --------------------------------------------
        if left() > 30:
            model.generate(prompts["short"][0] if "short" in prompts else "Hello",
                           SamplingParams.greedy(max_tokens=8), speculator=spec, cache_prompt=False)
        for p, (text, _n) in prompts.items():
            if not fits("ours", p):
                record("llama-mtp", p, mode, skipped="time budget")
                continue
            t0 = time.time()
            o = model.generate(text, SamplingParams.greedy(max_tokens=n_pred[p]), speculator=spec,
                               cache_prompt=False)
            cost[("ours", p)] = time.time() - t0
            s = o.stats
            record("llama-mtp", p, mode, prompt_tps=s.prompt_per_second,
                   gen_tps=s.predicted_per_second, predicted_n=s.predicted_n,
                   accept=s.draft_acceptance_rate if mode else None)
        # llama-server ------------------------------------------------------------------------
        if left() < 60:
            for p in prompts:
                record("llama-server", p, mode, skipped="time budget")
            continue
        cfg = Config(n_max=max(mode, 1), **cfg_base)
        extra = ("-ngl", str(a.ngl), "--spec-draft-ngl", str(a.ngl)) if mode else ("-ngl", str(a.ngl))
        srv = Server(Path(a.model), cfg, bool(mode), out / "llama-server.log",
                     exe=tools / "llama-server", extra=extra)
        try:
            srv.complete("Hello", 8)  # warm-up
            for p, (text, _n) in prompts.items():
                if not fits("server", p):
                    record("llama-server", p, mode, skipped="time budget")
                    continue
                t0 = time.time()
                r = srv.complete(text, n_pred[p])
                cost[("server", p)] = time.time() - t0
                tm = r["timings"]
                record("llama-server", p, mode, prompt_tps=tm["prompt_per_second"],
                       gen_tps=tm["predicted_per_second"], predicted_n=tm["predicted_n"],
                       accept=(tm["draft_n_accepted"] / tm["draft_n"]) if tm.get("draft_n") else None)
        finally:
            srv.close()
    # llama-cli (short prompt; it loads the model every time: last, if time is left) ----------
    if "short" in prompts:
        for mode in [int(m) for m in a.cli_modes.split(",") if m]:
            if left() < 60 + 2 * t_load:
                record("llama-cli", "short", mode, skipped="time budget")
                continue
            cmd = [str(tools / "llama-cli"), "-m", a.model, "-ngl", str(a.ngl), "-c", str(a.n_ctx),
                   "-st", "-p", prompts["short"][0], "-n", str(a.n_predict), "--temp", "0",
                   "--top-k", "1", "--show-timings", "--no-warmup", "-t", str(a.threads)]
            if mode:
                cmd += ["--spec-type", "draft-mtp", "--spec-draft-n-max", str(mode),
                        "--spec-draft-ngl", str(a.ngl)]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, left()),
                                     stdin=subprocess.DEVNULL)
                m = _CLI_TIMINGS.search(res.stdout + res.stderr)
                if m:
                    record("llama-cli", "short", mode, prompt_tps=float(m.group(1)),
                           gen_tps=float(m.group(2)), note="chat template applied")
                else:
                    record("llama-cli", "short", mode, error=(res.stdout + res.stderr)[-800:])
            except subprocess.TimeoutExpired:
                record("llama-cli", "short", mode, skipped="timeout")
    model.close()

    # the table ---------------------------------------------------------------------------------
    engines = ["llama-mtp", "llama-server", "llama-cli"]
    idx = {(r["engine"], r["prompt"], r["n_max"]): r for r in results}

    def cell(r: dict[str, Any] | None) -> tuple[str, str, str]:
        if r is None:
            return "–", "–", "–"
        if "skipped" in r or "error" in r:
            why = r.get("skipped") or "error"
            return f"({why})", "", ""
        acc = "–" if r.get("accept") is None else f"{100 * r['accept']:.1f}%"
        return f"{r['prompt_tps']:.1f}", f"{r['gen_tps']:.2f}", acc

    si = system_info()
    lines = [f"# llama-mtp GPU benchmark ({time.strftime('%Y-%m-%d %H:%M:%S')})", "",
             f"- model: `{Path(a.model).name}`; devices: "
             f"{', '.join(d.description for d in si.devices)}; CUDA archs {si.cuda_archs}",
             f"- build: {a.build_info}",
             f"- short prompt: {prompts.get('short', ('', 0))[1]} tokens, {a.n_predict} generated; "
             f"long prompts: {a.long_predict} generated; n_ctx {a.n_ctx}; greedy; one run per cell "
             "after a warm-up",
             "- llama-cli applies the chat template and loads the model per run (short prompt only)",
             "", "| prompt | mode | " + " | ".join(
                 f"{e} prompt t/s | {e} gen t/s | {e} accept" for e in engines) + " |",
             "|---|---|" + "---:|" * (3 * len(engines))]
    for p in prompts:
        for mode in sorted(modes):
            cells: list[str] = []
            for e in engines:
                cells += cell(idx.get((e, p, mode)))
            label = "short" if p == "short" else f"~{prompts[p][1]}"
            lines.append(f"| {label} | {'MTP' + str(mode) if mode else 'non-MTP'} | " +
                         " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    (out / "gpu_bench.md").write_text(md)
    (out / "gpu_bench.json").write_text(json.dumps(
        {"machine": machine(), "build": json.loads(a.build_info), "results": results,
         "model_load_s": t_load, "elapsed_s": time.time() - t_start}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
