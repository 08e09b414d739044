"""Soak: many threads making mixed calls on shared models for a long time; counts errors by type
and tracks the process's resident memory.

Each worker thread loops over: generate (plain or MTP, random prompt length), a stream left
early, chat, a streamed chat left early, a generate cancelled from another thread, a batch
(``generate(list)``), an asyncio stream cancelled mid-way; one more thread replaces the shared
model now and then and closes the old one while others still use it (those calls must end with
``ModelClosedError``, the documented outcome, and are retried on the new model).

    python benches/soak.py --calls 1000 --threads 8 --out benches/results/soak.json

Every error other than ``ModelClosedError`` / ``QueueFullError`` counts as a failure. RSS is read
from /proc after every call. Growth compares the median RSS of the last quarter of the calls with
the median of the quarter that follows the warm-up (``--warmup`` calls): medians, because a model
replacement holds two models for a moment and spikes the curve.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from llama_mtp import (CancelToken, Model, ModelClosedError, QueueFullError, SamplingParams, Speculator,
                       __version__)

WORDS = ("the quick brown fox jumps over a lazy dog while an old clockmaker in Kestrel Bay opens "
         "his tiny shop at dawn and 没有人 knows why").split()


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def mappings_of(path: Path) -> int:
    """Memory mappings of ``path`` in this process (a model not freed keeps its mapping)."""
    name = str(path.resolve())
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if line.rstrip().endswith(name))


def anon_mb() -> float:
    """Anonymous resident memory (heap, stacks, anonymous mappings) in MiB: RSS without the
    model file's pages."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def malloc_mb() -> tuple[float, float] | None:
    """glibc malloc's heap: bytes taken from the system (arenas, not counting blocks served by mmap)
    and the part of them in use, in MiB (mallinfo2; None elsewhere). Fragmentation shows as the
    first growing while the second stays flat."""
    try:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                        "usmblks", "fsmblks", "uordblks", "fordblks",
                                                        "keepcost")]

        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return None
    return info.arena / 2**20, info.uordblks / 2**20


def live_models() -> int:
    """Model objects still alive (open or closed but not yet collected)."""
    return sum(1 for o in gc.get_objects() if isinstance(o, Model))


def threads_now() -> int:
    """Threads of this process (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


class Shared:
    """The model all workers use; replaced (and the old one closed) by the closer thread."""

    def __init__(self, path: Path, kwargs: dict[str, Any]) -> None:
        self.path, self.kwargs = path, kwargs
        self.lock = threading.Lock()
        self.model = Model(path, **kwargs)

    def get(self) -> Model:
        with self.lock:
            return self.model

    def replace(self) -> None:
        new = Model(self.path, **self.kwargs)
        with self.lock:
            old, self.model = self.model, new
        old.close()


def one_call(model: Model, rng: random.Random) -> str:
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 120)))
    spec = rng.choice([Speculator.none(), Speculator.mtp(1), Speculator.mtp(2), Speculator.mtp(3)])
    params = SamplingParams(temperature=rng.choice([0.0, 0.8]), top_k=40, max_tokens=rng.randint(1, 24),
                            seed=rng.randint(0, 2**31))
    kind = rng.choice(["generate", "stream_early", "chat", "chat_stream_early", "cancel", "batch", "astream"])
    if kind == "generate":
        model.generate(prompt, params, speculator=spec)
    elif kind == "stream_early":
        for i, _ in enumerate(model.stream(prompt, params, speculator=spec)):
            if i >= rng.randint(0, 3):
                break
    elif kind == "chat":
        model.chat([{"role": "user", "content": prompt}], params, speculator=spec,
                   enable_thinking=rng.random() < 0.5)
    elif kind == "chat_stream_early":
        stream = model.chat_stream([{"role": "user", "content": prompt}], params, speculator=spec)
        for i, _ in enumerate(stream):
            if i >= 2:
                break
        stream.close()
    elif kind == "cancel":
        token = CancelToken()
        threading.Timer(rng.uniform(0.0, 0.2), token.cancel).start()
        model.generate(prompt, SamplingParams(max_tokens=200, ignore_eos=True), speculator=spec, cancel=token)
    elif kind == "batch":
        model.generate([prompt, prompt[: len(prompt) // 2] or "x", "hello"], params, speculator=spec)
    else:
        async def run() -> None:
            async def consume() -> None:
                async for _ in model.astream(prompt, SamplingParams(max_tokens=64), speculator=spec):
                    pass
            task = asyncio.create_task(consume())
            await asyncio.sleep(rng.uniform(0.0, 0.1))
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        asyncio.run(run())
    return kind


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", type=Path, default=None, help="GGUF (default: synthetic tiny, built once)")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--np", type=int, default=4, help="n_parallel of the model")
    ap.add_argument("--replace-every", type=float, default=20.0, help="seconds between model replacements (0: never)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write results JSON here (and a .md next to it)")
    a = ap.parse_args(argv)

    path = a.model
    if path is None:
        from llama_mtp.synthetic import build
        cache = Path.home() / ".cache" / "llama_mtp" / "bench-models"
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / "soak-tiny-Q8_0.gguf"
        if not path.exists():
            build(path, preset="tiny", quant="Q8_0", behaviour="chat", progress=False)
    shared = Shared(path, dict(n_ctx=4 * 2048, n_threads=1, n_parallel=a.np, max_queue=64))

    done = 0
    kinds: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    failures: list[str] = []
    samples: list[tuple[int, float]] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = time.perf_counter()

    def worker(index: int) -> None:
        nonlocal done
        rng = random.Random(a.seed * 1000 + index)
        while not stop.is_set():
            try:
                kind = one_call(shared.get(), rng)
                with lock:
                    kinds[kind] += 1
            except (ModelClosedError, QueueFullError) as exc:  # documented outcomes
                with lock:
                    errors[type(exc).__name__] += 1
            except Exception as exc:  # a failure
                with lock:
                    errors[type(exc).__name__] += 1
                    failures.append(f"{type(exc).__name__}: {exc}")
            with lock:
                done += 1
                samples.append((done, rss_mb()))
                if done >= a.calls:
                    stop.set()

    troughs: list[tuple[int, float, float, int]] = []  # (calls, RSS, anonymous RSS, live models)
    heaps: list[tuple[int, float, float]] = []  # (calls, malloc heap MiB, of it in use MiB)

    def replacer() -> None:
        while not stop.wait(a.replace_every):
            shared.replace()
            # right after a replacement one model is open: the curve of these samples is
            # what the process keeps, without the second model a replacement maps for a while
            # a call that was running on the old model holds it until it returns (with
            # ModelClosedError); sample once it has gone, so that each sample has one model
            deadline = time.monotonic() + 5.0
            while True:
                gc.collect()
                if live_models() <= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            with lock:
                kinds["model_replaced"] += 1
                troughs.append((done, rss_mb(), anon_mb(), live_models()))
                heap = malloc_mb()
                if heap is not None:
                    heaps.append((done, *heap))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.threads)]
    if a.replace_every > 0:
        threads.append(threading.Thread(target=replacer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared.get().close()
    elapsed = time.perf_counter() - started
    gc.collect()
    leftover = dict(model_mappings=mappings_of(path), threads=threads_now(), rss_mb=round(rss_mb(), 1))

    def window(lo: float, hi: float) -> float:
        values = [r for n, r in samples if lo <= n <= hi]
        return statistics.median(values) if values else 0.0

    quarter = (done - a.warmup) / 4
    at_warmup = window(a.warmup + 1, a.warmup + quarter)
    at_end = window(done - quarter, done)
    growth = (at_end - at_warmup) / at_warmup if at_warmup else 0.0
    settled = [r for n, r, _, m in troughs if n > a.warmup and m == 1]
    third = max(1, len(settled) // 3)
    trough_growth = ((statistics.median(settled[-third:]) - statistics.median(settled[:third]))
                     / statistics.median(settled[:third])) if len(settled) >= 3 else None
    result = dict(command=" ".join([os.path.basename(sys.executable), *sys.argv]), version=__version__,
                  machine=f"{platform.machine()}, {os.cpu_count()} CPUs", model=str(path), calls=done,
                  threads=a.threads, n_parallel=a.np, seconds=round(elapsed, 1), kinds=dict(kinds),
                  errors=dict(errors), failures=failures[:20], rss_mb_after_warmup=round(at_warmup, 1),
                  rss_mb_end=round(at_end, 1), rss_growth=round(growth, 4),
                  replace_every_s=a.replace_every, after_close=leftover,
                  rss_growth_after_replacements=None if trough_growth is None else round(trough_growth, 4),
                  after_replacements=[(n, round(r, 1), round(an, 1), m) for n, r, an, m in troughs],
                  malloc_after_replacements=[(n, round(h, 1), round(u, 1)) for n, h, u in heaps],
                  rss_curve=[(n, round(r, 1)) for n, r in samples[:: max(1, len(samples) // 40)]])
    print(json.dumps({k: v for k, v in result.items() if k != "rss_curve"}, indent=1))
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        md = [f"# Soak: {done} calls, {a.threads} threads, n_parallel {a.np}", "",
              f"`{result['command']}` ({result['machine']}, {elapsed:.0f} s)", "",
              "| call | count |", "|---|---:|", *[f"| {k} | {v} |" for k, v in sorted(kinds.items())], "",
              "| error | count |", "|---|---:|", *[f"| {k} | {v} |" for k, v in sorted(errors.items())], "",
              f"RSS (median) in the quarter after the warm-up ({a.warmup} calls): {at_warmup:.1f} MiB; "
              f"in the last quarter: {at_end:.1f} MiB; growth {growth:+.2%}. Model replaced every "
              f"{a.replace_every:g} s (0: never).", "",
              f"After the last model is closed: {leftover['model_mappings']} mappings of the model file, "
              f"{leftover['threads']} threads, RSS {leftover['rss_mb']} MiB.", ""]
        if trough_growth is not None:
            md += [f"RSS right after each replacement (one model open, closed ones collected), median "
                   f"of the last third of those samples against the first third after the warm-up: "
                   f"{trough_growth:+.2%}.", ""]
        if troughs:
            md += ["Right after each model replacement (one model open): calls, RSS MiB, anonymous "
                   "RSS MiB, Model objects alive:", "",
                   ", ".join(f"{n}: {r:.0f} / {an:.0f} / {m}" for n, r, an, m in troughs), ""]
        if heaps:
            md += ["At the same moments, glibc malloc's heap (all arenas; blocks served by mmap, such as the "
                   "KV cache, not counted): calls, MiB taken from the system / MiB of it in use:", "",
                   ", ".join(f"{n}: {h:.0f} / {u:.0f}" for n, h, u in heaps), ""]
        if failures:
            md += ["Failures:", "", *[f"- {f}" for f in failures[:20]], ""]
        a.out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
