"""Side-by-side benchmark: llama-mtp vs llama.cpp's own tools vs llama-cpp-python.

    python benches/bench.py                       # the full matrix (long: see --help)
    python benches/bench.py --quick               # one model, 2 runs: a smoke test of every contender

Contenders (greedy, same thread count, same n_ctx / n_batch / n_ubatch / flash-attn "auto"):

  ours            llama_mtp.Model.generate, plain decoding          (in a worker process)
  ours-mtp        ... with Speculator.mtp(n_max)
  server          llama-server /completion, plain                   (timings JSON)
  server-mtp      llama-server --spec-type draft-mtp --spec-draft-n-max K
  completion      llama-completion (its "eval time" line: decode time only, no sampling)
  spec-simple-mtp llama-speculative-simple --spec-type draft-mtp     (its "decoded ... t/s" line)
  lcp             llama-cpp-python 0.3.36 Llama.create_completion, plain
  lcp-pld         ... with draft_model=LlamaPromptLookupDecoding (its only speculative option:
                  it has no MTP in the library)
  llama-bench     prompt processing only (long workload): llama-bench -p N -n 0

The tools are built from the vendored llama.cpp with the extension's flags (benches/refs.py),
llama-cpp-python from its sdist into its own venv; both into benches/.cache (git-ignored).
Models: the synthetic ``bench`` preset (llama_mtp.synthetic), built into benches/.cache/models.

Each model is a block; inside it every contender runs once per repeat, in an order rotated
every repeat (interleaving: slow drift of the machine's load hits every contender alike).
Raw results: benches/results/<stamp>.json; the table: benches/results/<stamp>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pooled  # noqa: E402
import refs  # noqa: E402

RESULTS = HERE / "results"
MODELS = refs.CACHE / "models"
PROMPTS = refs.CACHE / "prompts"

PLAIN = pooled.PLAIN_CONTENDERS
MTP = pooled.MTP_CONTENDERS
ALL_CONTENDERS = PLAIN + MTP + ("llama-bench",)
NATIVE = pooled.NATIVE


# ------------------------------------------------------------------------------------------
# models and prompts
# ------------------------------------------------------------------------------------------
def model_path(preset: str, quant: str, agreement: float, vocab: int | None) -> Path:
    v = f"-v{vocab}" if vocab else ""
    return MODELS / f"{preset}{v}-{quant}-a{agreement:g}.gguf"


def ensure_model(preset: str, quant: str, agreement: float, vocab: int | None) -> Path:
    from llama_mtp import synthetic
    path = model_path(preset, quant, agreement, vocab)
    if not path.exists():
        t0 = time.perf_counter()
        try:
            synthetic.build(path, preset=preset, quant=quant, mtp_agreement=agreement,
                            vocab_size=vocab, progress=True)
        except ValueError as e:
            if "not in this" in str(e):
                raise SystemExit(
                    f"synthetic.build(preset={preset!r}) failed: {e}\nThe preset's vocabulary "
                    f"does not hold the behaviour script; pass --vocab 110080 (the smallest that "
                    f"holds it).") from e
            raise
        print(f"built {path.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


LONG_TEXT = (
    "Chapter {i}. The archive of the harbour office kept every ledger since the town was "
    "founded: ships, cargoes, tolls and the names of the pilots who brought them in. On page "
    "{i} a clerk had written, in a careful hand, that the winter storms of that year closed the "
    "channel for {j} days, and that the lighthouse keeper was paid twice for the extra oil. ")


def prompt_text(workload: str, n_tokens: int, tokenize: Callable[[str], list[int]]) -> str:
    """The prompt of a workload: ``short`` is one sentence; ``long`` grows a varied document
    until it has about ``n_tokens`` tokens."""
    if workload == "short":
        return "Once upon a time, in a small village by the sea, there lived a clockmaker."
    parts: list[str] = []
    i = 0
    # estimate the per-chunk token count once, then fill
    per = len(tokenize(LONG_TEXT.format(i=1, j=3)))
    while (i + 1) * per < n_tokens:
        parts.append(LONG_TEXT.format(i=i + 1, j=(i * 7) % 31 + 1))
        i += 1
    text = "".join(parts) + "\nQuestion: which chapter mentions the lighthouse keeper first?"
    return text


# ------------------------------------------------------------------------------------------
# contenders
# ------------------------------------------------------------------------------------------
@dataclass
class Trial:
    contender: str
    prompt_n: int = 0
    prompt_ms: float = 0.0
    predicted_n: int = 0
    predicted_ms: float = 0.0
    draft_n: int = 0
    draft_n_accepted: int = 0
    wall_s: float = 0.0
    correct: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_tps(self) -> float:
        return self.prompt_n / self.prompt_ms * 1e3 if self.prompt_ms > 0 else 0.0

    @property
    def gen_tps(self) -> float:
        return self.predicted_n / self.predicted_ms * 1e3 if self.predicted_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.update(prompt_tps=self.prompt_tps, gen_tps=self.gen_tps)
        return d


@dataclass
class Config:
    threads: int
    n_ctx: int
    n_batch: int
    n_ubatch: int
    n_max: int
    pld_tokens: int


class JsonWorker:
    """A persistent process answering one JSON line per request."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        first = self._read()
        if not first.get("ready"):
            raise RuntimeError(f"{cmd[0]} worker failed: {first}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"worker {shlex.join(self.cmd[:3])} died:\n{err[-3000:]}")
            line = line.strip()
            if line.startswith("{"):
                return dict(json.loads(line))

    def ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def lcp_worker(model: Path, cfg: Config, cpu: int | None = None) -> JsonWorker:
    """llama-cpp-python's worker (``_worker_lcp.py`` in its own venv) with ``model`` loaded."""
    c = {"model": str(model), "threads": cfg.threads, "n_ctx": cfg.n_ctx, "n_batch": cfg.n_batch,
         "n_ubatch": cfg.n_ubatch, "pld_tokens": cfg.pld_tokens}
    return JsonWorker(pin_prefix(cpu) + [str(refs.lcp_python()), str(HERE / "_worker_lcp.py"),
                                         json.dumps(c)])


def pin_prefix(cpu: int | None) -> list[str]:
    """``taskset`` prefix that keeps a process (and its threads) on one CPU; [] when unpinned
    or not on Linux."""
    if cpu is None or not sys.platform.startswith("linux"):
        return []
    return ["taskset", "-c", str(cpu)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """llama-server on 127.0.0.1, ``n_parallel`` slots (one by default)."""

    def __init__(self, model: Path, cfg: Config, mtp: bool, log: Path, *,
                 exe: Path | None = None, extra: tuple[str, ...] = (),
                 cpu: int | None = None, n_parallel: int = 1, kv_unified: bool | None = None) -> None:
        self.port = _free_port()
        cmd = pin_prefix(cpu) + [str(exe or refs.tool_path("llama-server")), "-m", str(model), "--host", "127.0.0.1",
               "--port", str(self.port), "-t", str(cfg.threads), "-tb", str(cfg.threads),
               "-c", str(cfg.n_ctx), "-b", str(cfg.n_batch), "-ub", str(cfg.n_ubatch), "-np", str(n_parallel),
               "-fa", "auto", "--no-webui", "--no-warmup"]
        if kv_unified is not None:
            cmd.append("-kvu" if kv_unified else "-no-kvu")
        if mtp:
            cmd += ["--spec-type", "draft-mtp", "--spec-draft-n-max", str(cfg.n_max)]
        cmd += list(extra)
        self.cmd = cmd
        self.log = open(log, "a", encoding="utf-8")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}); log {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"llama-server did not become ready; log {log}")
            time.sleep(0.5)

    def complete(self, prompt: str, n_predict: int) -> dict[str, Any]:
        body = json.dumps({"prompt": prompt, "n_predict": n_predict, "temperature": 0.0,
                           "top_k": 1, "cache_prompt": False, "return_tokens": True,
                           "seed": 1}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/completion", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=3600) as r:
            return dict(json.loads(r.read()))

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_EVAL = re.compile(r"(?<!prompt )eval time =\s*([\d.]+) ms /\s*(\d+) runs")
_ENCODED = re.compile(r"encoded\s+(\d+) tokens in\s+([\d.]+) seconds")
_DECODED = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds")
_DRAFTED = re.compile(r"n_drafted\s*=\s*(\d+)")
_ACCEPT = re.compile(r"n_accept\s*=\s*(\d+)")


def _run_tool(cmd: list[str]) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, timeout=3600)
    wall = time.perf_counter() - t0
    out = res.stdout.decode("utf-8", "replace")
    err = res.stderr.decode("utf-8", "replace")
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({res.returncode}):\n{err[-3000:]}")
    return out, err, wall


def run_completion(model: Path, prompt_file: Path, n_predict: int, cfg: Config) -> Trial:
    cmd = [str(refs.tool_path("llama-completion")), "-m", str(model), "-f", str(prompt_file),
           "-n", str(n_predict), "--temp", "0", "--top-k", "1", "-t", str(cfg.threads),
           "-tb", str(cfg.threads), "-c", str(cfg.n_ctx), "-b", str(cfg.n_batch),
           "-ub", str(cfg.n_ubatch), "-fa", "auto", "-no-cnv", "--no-warmup", "--seed", "1"]
    out, err, wall = _run_tool(cmd)
    pe, ev = _PROMPT_EVAL.search(err), _EVAL.search(err)
    if not pe or not ev:
        raise RuntimeError(f"no timings in llama-completion output:\n{err[-2000:]}")
    # "eval time" counts the decode calls after the prompt (n_predict - 1); the first token is
    # sampled from the prompt's logits, as in every other contender.
    t = Trial("completion", prompt_n=int(pe.group(2)), prompt_ms=float(pe.group(1)),
              predicted_n=int(ev.group(2)), predicted_ms=float(ev.group(1)), wall_s=wall)
    t.extra["text"] = out
    return t


def run_spec_simple(model: Path, prompt_file: Path, n_predict: int, cfg: Config) -> Trial:
    cmd = [str(refs.tool_path("llama-speculative-simple")), "-m", str(model), "-f",
           str(prompt_file), "--spec-type", "draft-mtp", "--spec-draft-n-max", str(cfg.n_max),
           "-n", str(n_predict), "--temp", "0", "--top-k", "1", "--seed", "1",
           "-t", str(cfg.threads), "-tb", str(cfg.threads), "-c", str(cfg.n_ctx),
           # it evaluates the whole prompt as one batch: n_batch must hold it
           "-b", str(cfg.n_ctx), "-ub", str(cfg.n_ubatch), "-fa", "auto"]
    out, err, wall = _run_tool(cmd)
    enc, dec = _ENCODED.search(err), _DECODED.search(err)
    dr, ac = _DRAFTED.search(err), _ACCEPT.search(err)
    if not (enc and dec and dr and ac):
        raise RuntimeError(f"no timings in llama-speculative-simple output:\n{err[-2000:]}")
    t = Trial("spec-simple-mtp", prompt_n=int(enc.group(1)),
              prompt_ms=float(enc.group(2)) * 1e3, predicted_n=int(dec.group(1)),
              predicted_ms=float(dec.group(2)) * 1e3, draft_n=int(dr.group(1)),
              draft_n_accepted=int(ac.group(1)), wall_s=wall)
    t.extra["text"] = out
    return t


def run_llama_bench(model: Path, n_prompt: int, cfg: Config) -> Trial:
    cmd = [str(refs.tool_path("llama-bench")), "-m", str(model), "-p", str(n_prompt), "-n", "0",
           "-t", str(cfg.threads), "-b", str(cfg.n_batch), "-ub", str(cfg.n_ubatch),
           "-fa", "1", "-r", "1", "-o", "json", "--no-warmup"]
    out, err, wall = _run_tool(cmd)
    rows = json.loads(out[out.index("["):])
    row = rows[0]
    ms = float(row["avg_ns"]) / 1e6
    return Trial("llama-bench", prompt_n=int(row["n_prompt"]), prompt_ms=ms, wall_s=wall,
                 extra={"flash_attn": row.get("flash_attn")})


# ------------------------------------------------------------------------------------------
# the matrix
# ------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.*)", cpu)
        info["cpu"] = m.group(1) if m else platform.processor()
        flags = re.search(r"flags\s*:\s*(.*)", cpu)
        if flags:
            info["simd"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
                            if f in flags.group(1).split()]
        mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
        info["mem_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
    except OSError:
        pass
    try:
        import llama_mtp
        si = llama_mtp.system_info()
        info["llama_commit"] = si.llama_commit
        info["cpu_features"] = si.cpu_features
    except Exception as e:  # pragma: no cover - informative only
        info["llama_mtp_error"] = repr(e)
    return info


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class Block:
    """One model: its persistent contenders, started lazily, closed at the end."""

    def __init__(self, model: Path, cfg: Config, log: Path) -> None:
        self.model, self.cfg, self.log = model, cfg, log
        self.workers: dict[str, Any] = {}

    def _ours(self, mtp: bool) -> JsonWorker:
        # one process per mode, as llama-server: switching a session between plain and MTP
        # re-creates its context (~0.1-0.2 s, outside the timed loop but not free)
        key = "ours-mtp" if mtp else "ours"
        if key not in self.workers:
            c = {"model": str(self.model), "threads": self.cfg.threads, "n_ctx": self.cfg.n_ctx,
                 "n_batch": self.cfg.n_batch, "n_ubatch": self.cfg.n_ubatch,
                 "spec_n_max": self.cfg.n_max if mtp else 0}
            self.workers[key] = JsonWorker([sys.executable, str(HERE / "_worker_ours.py"),
                                            json.dumps(c)])
        w: JsonWorker = self.workers[key]
        return w

    def _lcp(self) -> JsonWorker:
        if "lcp" not in self.workers:
            self.workers["lcp"] = lcp_worker(self.model, self.cfg)
        w: JsonWorker = self.workers["lcp"]
        return w

    def _server(self, mtp: bool) -> Server:
        key = "server-mtp" if mtp else "server"
        if key not in self.workers:
            self.workers[key] = Server(self.model, self.cfg, mtp, self.log)
        s: Server = self.workers[key]
        return s

    def run(self, contender: str, prompt_file: Path, prompt: str, n_predict: int,
            expected: list[int], expected_text: str) -> Trial:
        cfg = self.cfg
        if contender in ("ours", "ours-mtp"):
            w = self._ours(contender == "ours-mtp")
            c0 = cpu_seconds(w.proc.pid)
            r = w.ask({"prompt_file": str(prompt_file), "n_predict": n_predict,
                       "n_max": cfg.n_max if contender == "ours-mtp" else 0})
            cpu = cpu_seconds(w.proc.pid) - c0
            toks = r.pop("tokens")
            return Trial(contender, **{k: r[k] for k in ("prompt_n", "prompt_ms", "predicted_n",
                                                         "predicted_ms", "draft_n",
                                                         "draft_n_accepted", "wall_s")},
                         correct=toks == expected[:len(toks)] and len(toks) == n_predict,
                         extra={"cpu_s": cpu})
        if contender in ("server", "server-mtp"):
            srv = self._server(contender == "server-mtp")
            c0 = cpu_seconds(srv.proc.pid)
            t0 = time.perf_counter()
            r = srv.complete(prompt, n_predict)
            wall = time.perf_counter() - t0
            cpu = cpu_seconds(srv.proc.pid) - c0
            tm = r["timings"]
            toks = r.get("tokens") or []
            return Trial(contender, prompt_n=tm["prompt_n"], prompt_ms=tm["prompt_ms"],
                         predicted_n=tm["predicted_n"], predicted_ms=tm["predicted_ms"],
                         draft_n=tm.get("draft_n", 0), draft_n_accepted=tm.get("draft_n_accepted", 0),
                         wall_s=wall, correct=(toks == expected[:len(toks)] and len(toks) == n_predict)
                         if toks else r.get("content", "") == expected_text,
                         extra={"cpu_s": cpu})
        if contender in ("lcp", "lcp-pld"):
            w = self._lcp()
            c0 = cpu_seconds(w.proc.pid)
            r = w.ask({"prompt_file": str(prompt_file), "n_predict": n_predict,
                       "pld": contender == "lcp-pld"})
            cpu = cpu_seconds(w.proc.pid) - c0
            if "error" in r:
                raise RuntimeError(r["error"])
            text = r.pop("text")
            return Trial(contender, **{k: r[k] for k in ("prompt_n", "prompt_ms", "predicted_n",
                                                         "predicted_ms", "wall_s")},
                         correct=text == expected_text and r["predicted_n"] == n_predict,
                         extra={"cpu_s": cpu})
        if contender == "completion":
            t = run_completion(self.model, prompt_file, n_predict, cfg)
            t.correct = expected_text in t.extra.pop("text")
            return t
        if contender == "spec-simple-mtp":
            t = run_spec_simple(self.model, prompt_file, n_predict, cfg)
            t.correct = expected_text in t.extra.pop("text")
            return t
        if contender == "llama-bench":
            return run_llama_bench(self.model, len(expected_prompt_tokens(prompt_file)), cfg)
        raise ValueError(contender)

    def close(self) -> None:
        for w in self.workers.values():
            try:
                w.close()
            except Exception:
                pass
        self.workers.clear()


_PROMPT_TOKENS: dict[Path, list[int]] = {}


def expected_prompt_tokens(prompt_file: Path) -> list[int]:
    return _PROMPT_TOKENS[prompt_file]


def summarize(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and spread per (workload, quant, agreement, contender), ratios vs llama.cpp."""
    groups: dict[tuple[str, str, float, str], list[dict[str, Any]]] = {}
    for t in trials:
        if t.get("error"):
            continue
        groups.setdefault((t["workload"], t["quant"], t["agreement"], t["contender"]), []).append(t)

    def stats(vals: list[float]) -> dict[str, float]:
        vals = [v for v in vals if v > 0]
        if not vals:
            return {"median": 0.0, "min": 0.0, "max": 0.0, "spread_pct": 0.0, "n": 0}
        med = statistics.median(vals)
        return {"median": med, "min": min(vals), "max": max(vals),
                "spread_pct": 100.0 * (max(vals) - min(vals)) / med if med else 0.0,
                "n": len(vals)}

    rows: list[dict[str, Any]] = []
    for (wl, q, a, c), ts in sorted(groups.items()):
        row: dict[str, Any] = {"workload": wl, "quant": q, "agreement": a, "contender": c,
               "gen": stats([t["gen_tps"] for t in ts]),
               "prompt": stats([t["prompt_tps"] for t in ts]),
               "cpu_s": stats([t.get("extra", {}).get("cpu_s", 0.0) for t in ts]),
               "accept": (sum(t["draft_n_accepted"] for t in ts) / sum(t["draft_n"] for t in ts)
                          if sum(t["draft_n"] for t in ts) else None),
               "correct": all(t["correct"] is not False for t in ts)}
        rows.append(row)
    # plain contenders run on one agreement's model (their speed does not depend on the MTP
    # head): reuse them for every agreement of the same quant and workload
    idx = {(r["workload"], r["quant"], r["agreement"], r["contender"]): r for r in rows}

    def find(wl: str, q: str, a: float, c: str) -> dict[str, Any] | None:
        if (wl, q, a, c) in idx:
            return idx[(wl, q, a, c)]
        for (w2, q2, _a2, c2), r in idx.items():
            if (w2, q2, c2) == (wl, q, c):
                return r
        return None

    by_rep: dict[tuple[str, str, float, str, int], dict[str, Any]] = {
        (t["workload"], t["quant"], t["agreement"], t["contender"], t["rep"]): t
        for t in trials if not t.get("error")}

    def paired(r: dict[str, Any], ref: str, key: str) -> float | None:
        """Median over runs of (this run / the reference's run of the same repeat): the two ran
        back to back, so slow drift of the machine's load cancels."""
        ratios = []
        for (wl, q, a, c, rep), t in by_rep.items():
            if (wl, q, a, c) != (r["workload"], r["quant"], r["agreement"], r["contender"]):
                continue
            o = by_rep.get((wl, q, a, ref, rep))
            if o and o[key] > 0 and t[key] > 0:
                ratios.append(t[key] / o[key])
        return statistics.median(ratios) if ratios else None

    for r in rows:
        mode = "mtp" if r["contender"] in MTP else "plain"
        r["gen_ratio_paired"] = paired(r, NATIVE[mode], "gen_tps")
        r["prompt_ratio_paired"] = paired(r, NATIVE[mode], "prompt_tps")
        ref_c = find(r["workload"], r["quant"], r["agreement"], NATIVE[mode])
        # CPU seconds of the native reference / ours for the same request: > 1 means we do the
        # same work with less CPU. Robust to load on a shared machine (wall clock is not).
        r["cpu_efficiency_vs_native"] = (ref_c["cpu_s"]["median"] / r["cpu_s"]["median"]
                                         if ref_c and r["cpu_s"]["median"] and ref_c["cpu_s"]["median"]
                                         else None)
        ref = find(r["workload"], r["quant"], r["agreement"], NATIVE[mode])
        r["gen_ratio_vs_native"] = (r["gen"]["median"] / ref["gen"]["median"]
                                    if ref and ref["gen"]["median"] else None)
        ref_p = find(r["workload"], r["quant"], r["agreement"], NATIVE["plain"])
        if r["contender"] in MTP:
            ref_p = find(r["workload"], r["quant"], r["agreement"], NATIVE["mtp"])
        r["prompt_ratio_vs_native"] = (r["prompt"]["median"] / ref_p["prompt"]["median"]
                                       if ref_p and ref_p["prompt"]["median"] else None)
        base = pooled.PLAIN_BASE.get(r["contender"])
        b = find(r["workload"], r["quant"], r["agreement"], base) if base else None
        r["speedup_vs_plain"] = (r["gen"]["median"] / b["gen"]["median"]
                                 if b and b["gen"]["median"] else None)
    return rows


def failures(trials: list[dict[str, Any]]) -> list[str]:
    """One line per (workload, quant, agreement, contender) with failed runs."""
    out: dict[tuple[str, str, float, str], list[str]] = {}
    for t in trials:
        if t.get("error"):
            out.setdefault((t["workload"], t["quant"], t["agreement"], t["contender"]),
                           []).append(t["error"].strip().splitlines()[-1][:160])
    return [f"- {wl} {q} a{a:g} `{c}`: {len(errs)} run(s) failed: `{errs[0]}`"
            for (wl, q, a, c), errs in sorted(out.items())]


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any],
             trials: list[dict[str, Any]] | None = None) -> str:
    m = meta["machine"]
    lines = [f"# llama-mtp benchmark ({meta['stamp']})", "",
             f"- command: `{meta['command']}`",
             f"- machine: {m.get('cpu')} , {m.get('cpus')} logical CPUs, {m.get('mem_gib')} GiB; "
             f"SIMD {', '.join(m.get('simd', []))}; llama.cpp {m.get('llama_commit')}",
             f"- threads: {meta['config']['threads']} for every contender ({meta['threads_reason']})",
             f"- n_ctx {meta['config']['n_ctx']}, n_batch {meta['config']['n_batch']}, "
             f"n_ubatch {meta['config']['n_ubatch']}, MTP n_max {meta['config']['n_max']}, "
             f"lcp prompt-lookup num_pred_tokens {meta['config']['pld_tokens']}; greedy",
             f"- runs per cell: {meta['runs']} (interleaved, order rotated each run); "
             f"load average {meta.get('load_start')} at start, {meta.get('load_end')} at end",
             f"- reference builds: {json.dumps(meta.get('builds', {}))}",
             "",
             "tok/s: median [min–max] over the runs. ×native: ratio of medians to llama-server "
             "(plain → `server`, MTP → `server-mtp`) on the same model; paired: median of the "
             "per-repeat ratios (each run against the reference's run of the same repeat, back "
             "to back: robust to load drift). speed-up: MTP ÷ the same engine's plain decoding "
             "(lcp-pld ÷ lcp; spec-simple-mtp ÷ completion). CPU s/request: user+system CPU "
             "time of the engine's process for the request (persistent processes only); CPU "
             "×native: the reference's CPU time ÷ this one's (> 1: less CPU for the same work; "
             "unlike wall-clock speed it hardly moves with the machine's load).", ""]
    for wl in sorted({r["workload"] for r in rows}):
        lines += [f"## workload `{wl}`", "",
                  "| quant | agree | contender | gen tok/s | ×native | paired | speed-up | prompt tok/s | ×native (prompt) | paired | CPU s/request | CPU ×native | accept | correct |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
        for r in rows:
            if r["workload"] != wl:
                continue
            g, p = r["gen"], r["prompt"]

            def f(x: float | None, fmt: str = "{:.2f}") -> str:
                return "–" if x is None else fmt.format(x)
            gen = "–" if not g["n"] else f"{g['median']:.2f} [{g['min']:.2f}–{g['max']:.2f}]"
            pr = "–" if not p["n"] else f"{p['median']:.1f} [{p['min']:.1f}–{p['max']:.1f}]"
            lines.append(f"| {r['quant']} | {r['agreement']:g} | {r['contender']} | {gen} | "
                         f"{f(r['gen_ratio_vs_native'], '{:.3f}') if g['n'] else '–'} | "
                         f"{f(r.get('gen_ratio_paired'), '{:.3f}')} | "
                         f"{f(r['speedup_vs_plain'])} | {pr} | "
                         f"{f(r['prompt_ratio_vs_native'], '{:.3f}') if p['n'] else '–'} | "
                         f"{f(r.get('prompt_ratio_paired'), '{:.3f}')} | "
                         f"{f(r['cpu_s']['median'] or None)} | "
                         f"{f(r.get('cpu_efficiency_vs_native'), '{:.3f}')} | "
                         f"{f(r['accept'], '{:.3f}')} | {'yes' if r['correct'] else 'NO'} |")
        lines.append("")
    pooled_md = pooled.table_from_trials(trials or [])
    if pooled_md.count("\n") > 2:
        lines += ["## pooled ratios (all cells of this file)", "", pooled.__doc__.split("\n\n")[2]
                  .replace("\n", " "), "", pooled_md]
    fails = failures(trials or [])
    if fails:
        lines += ["## failed runs", ""] + fails + [""]
    return "\n".join(lines)


def merge(files: list[str], stem: str) -> int:
    """One table from several results files (e.g. one per quantization or workload)."""
    trials: list[dict[str, Any]] = []
    metas = []
    for f in files:
        d = json.loads(Path(f).read_text())
        trials += d["trials"]
        metas.append(d["meta"])
    meta = dict(metas[0])
    meta["stamp"] = stem
    meta["command"] = " ; ".join(m["command"] for m in metas)
    meta["runs"] = "/".join(str(m["runs"]) for m in metas)
    meta["load_start"] = "/".join(str(m.get("load_start")) for m in metas)
    meta["load_end"] = "/".join(str(m.get("load_end")) for m in metas)
    meta["merged_from"] = files
    rows = summarize(trials)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "summary": rows,
                                                       "trials": trials}, indent=1))
    md = markdown(rows, meta, trials)
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--vocab", type=int, default=None,
                    help="override the preset's vocabulary size")
    ap.add_argument("--quants", default="Q4_K_M,Q8_0")
    ap.add_argument("--agreements", default="0.5,0.8,1.0")
    ap.add_argument("--plain-agreement", type=float, default=0.8,
                    help="plain contenders run on this agreement's model only (their speed does "
                         "not depend on the MTP head)")
    ap.add_argument("--workloads", default="short,long")
    ap.add_argument("--long-agreements", default="0.8",
                    help="agreements the long workload runs on")
    ap.add_argument("--contenders", default=",".join(ALL_CONTENDERS))
    ap.add_argument("--long-contenders", default=None,
                    help="contenders of the long workload (default: --contenders)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--threads-reason", default="default")
    ap.add_argument("--n-predict", type=int, default=256)
    ap.add_argument("--long-tokens", type=int, default=8192)
    ap.add_argument("--long-predict", type=int, default=16)
    ap.add_argument("--n-max", type=int, default=2, help="MTP draft length (--spec-draft-n-max)")
    ap.add_argument("--pld-tokens", type=int, default=2,
                    help="llama-cpp-python LlamaPromptLookupDecoding num_pred_tokens")
    ap.add_argument("--n-ctx", type=int, default=10240)
    ap.add_argument("--quick", action="store_true", help="smoke test: Q4_K_M a0.8, 2 runs, 32 tokens, "
                                                         "1k-token long prompt")
    ap.add_argument("--no-build", action="store_true", help="do not build missing references")
    ap.add_argument("--out", default=None, help="results stem (default: a timestamp)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="no runs: merge earlier results files into one table (--out STEM)")
    ap.add_argument("--cli-agreements", default="0.8",
                    help="agreements llama-completion / llama-speculative-simple run on")
    a = ap.parse_args(argv)
    if a.merge:
        return merge(a.merge, a.out or "merged")
    if a.quick:
        a.quants, a.agreements, a.runs, a.n_predict = "Q4_K_M", "0.8", 2, 32
        a.long_tokens, a.long_predict = 1024, 8
    from tqdm import tqdm  # type: ignore[import-untyped]

    contenders = [c for c in a.contenders.split(",") if c]
    for c in contenders:
        if c not in ALL_CONTENDERS:
            raise SystemExit(f"unknown contender {c!r}; known: {', '.join(ALL_CONTENDERS)}")
    builds: dict[str, Any] = {}
    if any(c in contenders for c in ("server", "server-mtp", "completion", "spec-simple-mtp",
                                     "llama-bench")):
        if not a.no_build:
            builds["tools"] = refs.build_tools()
        builds["tool_flags_identical_to_extension"] = refs.compare_flags()["identical"]
    if any(c.startswith("lcp") for c in contenders):
        if not a.no_build or refs.lcp_python().exists():
            builds["llama-cpp-python"] = refs.build_llama_cpp_python()
    quants = a.quants.split(",")
    agreements = [float(x) for x in a.agreements.split(",")]
    workloads = a.workloads.split(",")
    long_agreements = [float(x) for x in a.long_agreements.split(",")]
    cfg = Config(threads=a.threads, n_ctx=a.n_ctx, n_batch=2048, n_ubatch=512, n_max=a.n_max,
                 pld_tokens=a.pld_tokens)
    stamp = a.out or time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    PROMPTS.mkdir(parents=True, exist_ok=True)
    log = refs.CACHE / "logs" / f"bench-{stamp}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"stamp": stamp, "command": shlex.join([sys.executable, *sys.argv]),
                            "machine": machine(), "config": cfg.__dict__, "runs": a.runs,
                            "threads_reason": a.threads_reason, "builds": builds,
                            "load_start": loadavg(), "preset": a.preset, "vocab": a.vocab}

    from llama_mtp import Model, synthetic

    # the plan: (model, workload, contender) cells
    plan: list[tuple[str, float, list[tuple[str, str]]]] = []
    for q in quants:
        for ag in agreements:
            cells = []
            for wl in workloads:
                if wl == "long" and ag not in long_agreements:
                    continue
                for c in contenders:
                    if wl == "long" and a.long_contenders and c not in a.long_contenders.split(","):
                        continue
                    if c in PLAIN and ag != a.plain_agreement:
                        continue
                    if c in ("completion", "spec-simple-mtp") and \
                            ag not in [float(x) for x in a.cli_agreements.split(",")]:
                        continue
                    if c == "llama-bench" and (wl != "long" or ag != a.plain_agreement):
                        continue
                    cells.append((wl, c))
            if cells:
                plan.append((q, ag, cells))
    total = sum(len(cells) for _, _, cells in plan) * a.runs
    trials: list[dict[str, Any]] = []
    out_json = RESULTS / f"{stamp}.json"

    def save() -> None:
        meta["load_end"] = loadavg()
        rows = summarize(trials)
        out_json.write_text(json.dumps({"meta": meta, "summary": rows, "trials": trials},
                                       indent=1))
        (RESULTS / f"{stamp}.md").write_text(markdown(rows, meta, trials))

    bar = tqdm(total=total, desc="bench", unit="run", dynamic_ncols=True)
    for q, ag, cells in plan:
        path = ensure_model(a.preset, q, ag, a.vocab)
        vocab_model = Model(path, vocab_only=True)
        prompts: dict[str, tuple[Path, str, list[int], list[int], str]] = {}
        for wl in sorted({wl for wl, _ in cells}):
            text = prompt_text(wl, a.long_tokens, lambda s: vocab_model.tokenize(s))
            pf = PROMPTS / f"{wl}-{a.long_tokens}.txt"
            pf.write_text(text, encoding="utf-8")
            ptoks = vocab_model.tokenize(text, add_special=True, parse_special=True)
            _PROMPT_TOKENS[pf] = ptoks
            n_pred = a.n_predict if wl == "short" else a.long_predict
            exp = synthetic.expected_continuation(path, ptoks, n_pred)
            prompts[wl] = (pf, text, ptoks, exp, vocab_model.detokenize(exp))
        block = Block(path, cfg, log)
        try:
            for rep in range(a.runs):
                k = rep % len(cells)
                for wl, c in cells[k:] + cells[:k]:
                    pf, text, ptoks, exp, exp_text = prompts[wl]
                    n_pred = a.n_predict if wl == "short" else a.long_predict
                    bar.set_postfix_str(f"{q} a{ag:g} {wl} {c} #{rep + 1}")
                    rec: dict[str, Any] = {"quant": q, "agreement": ag, "workload": wl,
                                           "contender": c, "rep": rep, "load": loadavg()}
                    try:
                        t = block.run(c, pf, text, n_pred, exp, exp_text)
                        rec.update(t.to_dict())
                    except Exception as e:
                        rec.update(Trial(c).to_dict())
                        rec["error"] = str(e)[-2000:]
                        tqdm.write(f"[{q} a{ag:g} {wl} {c}] error: {str(e)[-500:]}")
                    trials.append(rec)
                    bar.update(1)
                save()
        finally:
            block.close()
            vocab_model.close()
    bar.close()
    save()
    print((RESULTS / f"{stamp}.md").read_text())
    print(f"raw: {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
