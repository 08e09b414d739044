"""Load on the OpenAI-compatible server: N concurrent streaming clients for T seconds.

Each client sends streaming ``/v1/completions`` requests back to back (a prompt from a fixed set,
``max_tokens`` tokens, greedy, ``ignore_eos``) and times every one: time to first token, the gaps
between content events (inter-token latency; with MTP an event may carry several tokens) and the
tokens generated (the ``usage`` of the final chunk, ``stream_options.include_usage``). The
server's resident memory is sampled every second from ``/proc``. Reported: errors by kind,
requests, aggregate generated tok/s (tokens of the requests that finished inside the window,
over the window), p50 / p99 of TTFT and ITL, RSS after warm-up / at the end / growth.

Servers (each started as its own process, the same model, threads, context and slots):

* ``ours``: ``llama-mtp serve`` (``python -m llama_mtp serve``);
* ``llama-server``: llama.cpp's own, built from the same vendored tree by ``benches/refs.py``
  (built on first use: ``python benches/refs.py tools``).

    python benches/serve_load.py --clients 4 --duration 10                 # smoke, ours, tiny model
    python benches/serve_load.py --server both --clients 32 --duration 60 --np 4 \\
        --out benches/results/serve-load-np4    # the issue's comparison (.json + .md)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import refs  # noqa: E402

PROMPTS = ["Once upon a time", "The history of the harbour town", "Write a short story about a clock",
           "In the winter evening", "A traveller knocked three times", "Explain how pendulums work",
           "The children gathered outside", "Describe a quiet shop at dawn"]


@dataclass
class Request:
    """One streamed request, as the client saw it."""

    start: float
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    end: float | None = None
    error: str | None = None


@dataclass
class Result:
    """One server's run."""

    server: str
    command: list[str]
    requests: list[Request]
    rss_mb: list[tuple[float, float]]
    duration: float
    warmup: float

    def summary(self) -> dict[str, Any]:
        """Errors, throughput, latencies, memory."""
        window = [r for r in self.requests if r.end is not None and r.start >= self.warmup
                  and r.end <= self.warmup + self.duration]
        ok = [r for r in window if r.error is None]
        errors: dict[str, int] = {}
        for r in self.requests:
            if r.error is not None:
                errors[r.error] = errors.get(r.error, 0) + 1
        ttft = sorted(r.ttft for r in ok if r.ttft is not None)
        gaps = sorted(g for r in ok for g in r.gaps)
        after_warmup = [mb for t, mb in self.rss_mb if t >= self.warmup]
        rss_start = after_warmup[0] if after_warmup else 0.0
        rss_end = after_warmup[-1] if after_warmup else 0.0
        return {
            "server": self.server, "requests_ok": len(ok), "errors": errors,
            "error_count": sum(errors.values()),
            "tokens": sum(r.tokens for r in ok),
            "tok_per_s": sum(r.tokens for r in ok) / self.duration,
            "ttft_p50_ms": _pct(ttft, 50) * 1e3, "ttft_p99_ms": _pct(ttft, 99) * 1e3,
            "itl_p50_ms": _pct(gaps, 50) * 1e3, "itl_p99_ms": _pct(gaps, 99) * 1e3,
            "rss_after_warmup_mb": rss_start, "rss_end_mb": rss_end,
            "rss_max_mb": max(after_warmup, default=0.0),
            "rss_growth_pct": (rss_end / rss_start - 1) * 100 if rss_start else 0.0,
        }


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def server_command(kind: str, model: Path, port: int, a: argparse.Namespace) -> list[str]:
    """The command line of one server, both with llama-server's flags."""
    common = ["-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", str(a.threads),
              "-tb", str(a.threads), "-c", str(a.ctx), "-np", str(a.np)]
    if a.mtp:
        common += ["--spec-type", "draft-mtp", "--spec-draft-n-max", str(a.mtp)]
    if kind == "ours":
        return [sys.executable, "-m", "llama_mtp", "serve", *common, "--max-queue", str(max(64, a.clients))]
    exe = refs.tool_path("llama-server")
    if not exe.exists():
        print("building llama-server from the vendored tree (benches/refs.py tools) ...", file=sys.stderr)
        refs.build_tools(("llama-server",))
    return [str(exe), *common, "--no-webui", "--metrics"]


async def client_loop(http: httpx.AsyncClient, url: str, i: int, stop_at: float, max_tokens: int,
                      out: list[Request]) -> None:
    """One client: streamed requests back to back until ``stop_at``."""
    n = 0
    while time.perf_counter() < stop_at:
        body = {"prompt": PROMPTS[(i + n) % len(PROMPTS)], "max_tokens": max_tokens, "stream": True,
                "temperature": 0, "ignore_eos": True, "stream_options": {"include_usage": True}}
        n += 1
        req = Request(start=time.perf_counter())
        out.append(req)
        last = None
        try:
            async with http.stream("POST", url, json=body) as r:
                if r.status_code != 200:
                    req.error = f"HTTP {r.status_code}"
                    await r.aread()
                    continue
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    obj = json.loads(line[6:])
                    if "error" in obj:
                        req.error = f"in-band {obj['error'].get('type')}"
                        break
                    now = time.perf_counter()
                    if any(c.get("text") for c in obj.get("choices", [])):
                        if req.ttft is None:
                            req.ttft = now - req.start
                        elif last is not None:
                            req.gaps.append(now - last)
                        last = now
                    if obj.get("usage"):
                        req.tokens = int(obj["usage"]["completion_tokens"])
            if req.error is None and req.tokens == 0:
                req.error = "no usage"
        except (httpx.HTTPError, OSError) as exc:
            req.error = type(exc).__name__
        finally:
            req.end = time.perf_counter()


async def drive(base: str, a: argparse.Namespace, pid: int, t0: float) -> tuple[list[Request], list[tuple[float, float]]]:
    """All clients, plus the RSS sampler; times relative to ``t0``."""
    requests: list[Request] = []
    rss: list[tuple[float, float]] = []
    stop_at = time.perf_counter() + a.warmup + a.duration
    limits = httpx.Limits(max_connections=a.clients + 4, max_keepalive_connections=a.clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=30), limits=limits) as http:
        async def sample() -> None:
            while time.perf_counter() < stop_at:
                rss.append((time.perf_counter() - t0, _rss_mb(pid)))
                await asyncio.sleep(1.0)

        await asyncio.gather(sample(), *(client_loop(http, base + "/v1/completions", i, stop_at,
                                                     a.max_tokens, requests) for i in range(a.clients)))
    for r in requests:
        r.start -= t0
        if r.end is not None:
            r.end -= t0
    return requests, rss


def run_one(kind: str, model: Path, a: argparse.Namespace, log_dir: Path) -> Result:
    """Start one server, load it, stop it."""
    port = _free_port()
    cmd = server_command(kind, model, port, a)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"serve_load-{kind}.log", "w", encoding="utf-8")
    print(f"$ {shlex.join(cmd)}", file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited ({proc.returncode}); log {log.name}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"{kind} did not become ready; log {log.name}")
            time.sleep(0.3)
        t0 = time.perf_counter()
        requests, rss = asyncio.run(drive(base, a, proc.pid, t0))
        return Result(kind, cmd, requests, rss, a.duration, a.warmup)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _rounded(obj: Any) -> Any:
    """Seconds to 0.1 ms in the raw JSON (it holds every request's gaps)."""
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def _load(value: Any) -> str:
    return "unknown" if not value else " / ".join(f"{v:.1f}" for v in value)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """A table of the runs (and the tok/s ratio when there are two)."""
    out = [f"# Server load: {meta['clients']} streaming clients, {meta['duration']} s "
           f"(after {meta['warmup']} s warm-up), -np {meta['np']}, -t {meta['threads']}",
           "", f"Model `{meta['model']}`, {meta['max_tokens']} tokens a request, greedy, "
           f"MTP {meta['mtp'] or 'off'}; {meta['cpus']} CPUs, load average before the run "
           f"{_load(meta['loadavg_before'])}. Command: `{meta['command']}`", "",
           "| server | requests | errors | tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | "
           "RSS after warm-up / end MB (growth) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['server']} | {r['requests_ok']} | {r['error_count']} | {r['tok_per_s']:.1f} | "
                   f"{r['ttft_p50_ms']:.0f} / {r['ttft_p99_ms']:.0f} | {r['itl_p50_ms']:.1f} / "
                   f"{r['itl_p99_ms']:.1f} | {r['rss_after_warmup_mb']:.0f} / {r['rss_end_mb']:.0f} "
                   f"({r['rss_growth_pct']:+.1f} %) |")
    if len(rows) == 2 and rows[1]["tok_per_s"]:
        out += ["", f"Aggregate tok/s, {rows[0]['server']} / {rows[1]['server']}: "
                f"**{rows[0]['tok_per_s'] / rows[1]['tok_per_s']:.3f}**"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--server", choices=("ours", "llama-server", "both"), default="ours")
    p.add_argument("-m", "--model", type=Path, default=None,
                   help="GGUF (default: the synthetic tiny model, Q8_0, built into benches/.cache)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the measured window")
    p.add_argument("--np", type=int, default=4, help="slots (-np) for both servers")
    p.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("-c", "--ctx", type=int, default=8192, help="-c for both servers")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--mtp", type=int, default=0, help="--spec-draft-n-max with draft-mtp (0: off)")
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    a = p.parse_args(argv)
    model = a.model
    if model is None:
        from llama_mtp import synthetic

        model = refs.CACHE / "models" / "tiny-Q8_0-a0.8.gguf"
        if not model.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            synthetic.build(model, preset="tiny", quant="Q8_0", mtp_agreement=0.8, progress=False)
    kinds = ["ours", "llama-server"] if a.server == "both" else [a.server]
    log_dir = refs.CACHE / "logs"  # git-ignored
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows, runs = [], []
    for kind in kinds:
        res = run_one(kind, model, a, log_dir)
        row = res.summary()
        rows.append(row)
        runs.append({"summary": row, "command": res.command,
                     "rss_mb": [(round(t, 2), round(mb, 1)) for t, mb in res.rss_mb],
                     "requests": [_rounded(asdict(r)) for r in res.requests]})
        print(json.dumps(row), file=sys.stderr)
    meta = {"clients": a.clients, "duration": a.duration, "warmup": a.warmup, "np": a.np,
            "threads": a.threads, "ctx": a.ctx, "max_tokens": a.max_tokens, "mtp": a.mtp,
            "model": str(model), "command": shlex.join([sys.executable, *sys.argv]),
            "machine": platform.platform(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "loadavg_before": load_before}
    md = markdown(rows, meta)
    print(md)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
        a.out.with_suffix(".md").write_text(md)
    return 1 if any(r["error_count"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
