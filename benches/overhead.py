"""Python-side costs of llama-mtp: per-token streaming overhead, and whether decode holds the GIL.

    python benches/overhead.py [--model PATH] [--threads 1] [--tokens 512] [--runs 7]

1. Streaming overhead: ``Model.stream`` vs ``Model.generate`` on the same prompt, interleaved.
   The engine's own generation clock (``stats.predicted_ms``, the C++ loop from the first token
   to the last) includes every per-step callback into Python (GIL re-acquire, building the
   chunk, the queue hand-over), so (stream - generate) / tokens is the per-token overhead of
   streaming inside the decode loop; the consumer's wall time is reported too.
2. GIL: a second Python thread runs a pure-Python counting loop; its rate alone is compared
   with its rate while ``generate`` (called from the main thread, which also polls for Ctrl-C
   once per step; and called from a worker thread, which does not) and ``stream`` run. If decode held the GIL the counter would stall.
   The decode speed with and without that busy thread is reported as well.

Default model: the ``tiny`` synthetic preset with a 110,080-token vocabulary (a few ms per
token, so per-token overhead is visible), built into benches/.cache/models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import refs  # noqa: E402


class Counter(threading.Thread):
    """Counts pure-Python loop iterations until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.n = 0
        self.stop = threading.Event()
        self.t0 = self.t1 = 0.0

    def run(self) -> None:
        n = 0
        self.t0 = time.perf_counter()
        while not self.stop.is_set():
            for _ in range(1000):
                n += 1
        self.t1 = time.perf_counter()
        self.n = n

    def rate(self) -> float:
        return self.n / (self.t1 - self.t0) if self.t1 > self.t0 else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--n-max", type=int, default=0, help="MTP draft length (0: plain decoding)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    from tqdm import tqdm  # type: ignore[import-untyped]

    from llama_mtp import Model, SamplingParams, Speculator, synthetic
    path = Path(a.model) if a.model else refs.CACHE / "models" / "tiny-v110080-Q8_0-a0.8.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic.build(path, preset="tiny", quant="Q8_0", mtp_agreement=0.8, vocab_size=110080)
    model = Model(path, n_threads=a.threads, n_threads_batch=a.threads, n_ctx=4096)
    prompt = model.tokenize("Once upon a time, in a small village by the sea")
    sp = SamplingParams.greedy(max_tokens=a.tokens)
    spec = Speculator.mtp(a.n_max) if a.n_max else None
    model.generate(prompt, SamplingParams.greedy(max_tokens=16), speculator=spec)  # warm-up

    cpu_ms: dict[str, list[float]] = {"generate": [], "stream": []}

    def gen() -> tuple[float, float, int]:
        c0, t0 = time.process_time(), time.perf_counter()
        out = model.generate(prompt, sp, speculator=spec, cache_prompt=False)
        cpu_ms["generate"].append((time.process_time() - c0) * 1e3 / out.stats.predicted_n)
        return out.stats.predicted_ms, (time.perf_counter() - t0) * 1e3, out.stats.predicted_n

    def stream() -> tuple[float, float, int]:
        c0, t0 = time.process_time(), time.perf_counter()
        s = model.stream(prompt, sp, speculator=spec, cache_prompt=False)
        n_chunks = sum(1 for _ in s)
        assert s.output is not None and n_chunks > 0
        cpu_ms["stream"].append((time.process_time() - c0) * 1e3 / s.output.stats.predicted_n)
        return s.output.stats.predicted_ms, (time.perf_counter() - t0) * 1e3, s.output.stats.predicted_n

    res: dict[str, Any] = {"model": str(path), "threads": a.threads, "tokens": a.tokens,
                           "n_max": a.n_max, "runs": a.runs}
    # 1. streaming overhead -----------------------------------------------------------------
    per_tok: dict[str, list[float]] = {"generate": [], "stream": [], "generate_wall": [],
                                       "stream_wall": []}
    for i in tqdm(range(a.runs), desc="stream vs generate"):
        order = [("generate", gen), ("stream", stream)]
        if i % 2:
            order.reverse()
        for name, fn in order:
            ms, wall, n = fn()
            per_tok[name].append(ms * 1e3 / n)
            per_tok[name + "_wall"].append(wall * 1e3 / n)
    med = {k: statistics.median(v) for k, v in per_tok.items()}
    n_pair = len(per_tok["stream"])
    cpu_diffs = [(s - g) * 1e3 for s, g in zip(cpu_ms["stream"][:n_pair], cpu_ms["generate"][:n_pair])]
    # paired differences (each run's stream minus its generate) are less noisy than medians
    diffs = [s - g for s, g in zip(per_tok["stream"], per_tok["generate"])]
    diffs_wall = [s - g for s, g in zip(per_tok["stream_wall"], per_tok["generate_wall"])]
    res["streaming"] = {
        "us_per_token_generate": med["generate"], "us_per_token_stream": med["stream"],
        "overhead_us_per_token_median": statistics.median(diffs),
        "overhead_us_per_token_wall_median": statistics.median(diffs_wall),
        "overhead_us_per_token_all": diffs,
        # process CPU time (all threads) per token: the hand-over's CPU cost, hardly moved by
        # the machine's load, unlike wall time
        "cpu_us_per_token_generate": statistics.median(cpu_ms["generate"][:n_pair]) * 1e3,
        "cpu_us_per_token_stream": statistics.median(cpu_ms["stream"][:n_pair]) * 1e3,
        "cpu_overhead_us_per_token_median": statistics.median(cpu_diffs),
        "cpu_overhead_us_per_token_all": cpu_diffs,
    }
    # 2. GIL ---------------------------------------------------------------------------------
    def count_during(fn: Any, seconds: float | None = None) -> tuple[float, Any]:
        c = Counter()
        c.start()
        time.sleep(0.05)
        r = None
        if fn:
            r = fn()
        else:
            time.sleep(seconds or 1.0)
        c.stop.set()
        c.join()
        return c.rate(), r

    def gen_in_thread() -> tuple[float, float, int]:
        box: list[tuple[float, float, int]] = []
        t = threading.Thread(target=lambda: box.append(gen()))
        t.start()
        t.join()
        return box[0]

    alone, during_gen, during_stream, gen_busy, gen_idle = [], [], [], [], []
    during_gen_thr, gen_thr_busy, stream_busy = [], [], []
    for _ in tqdm(range(a.runs), desc="GIL"):
        alone.append(count_during(None, 1.5)[0])
        rate, r = count_during(gen)
        during_gen.append(rate)
        gen_busy.append(r[2] / r[0] * 1e3)
        rate, r = count_during(gen_in_thread)
        during_gen_thr.append(rate)
        gen_thr_busy.append(r[2] / r[0] * 1e3)
        rate, r = count_during(stream)
        during_stream.append(rate)
        stream_busy.append(r[2] / r[0] * 1e3)
        ms, _, n = gen()
        gen_idle.append(n / ms * 1e3)
    m_alone = statistics.median(alone)
    res["gil"] = {
        "counter_alone_per_s": m_alone,
        "counter_during_generate_per_s": statistics.median(during_gen),
        "counter_during_stream_per_s": statistics.median(during_stream),
        "counter_during_generate_in_thread_per_s": statistics.median(during_gen_thr),
        "ratio_during_generate": statistics.median(during_gen) / m_alone,
        "ratio_during_generate_in_thread": statistics.median(during_gen_thr) / m_alone,
        "ratio_during_stream": statistics.median(during_stream) / m_alone,
        "decode_tok_s_idle_python": statistics.median(gen_idle),
        "decode_tok_s_busy_python_thread": statistics.median(gen_busy),
        "decode_tok_s_busy_python_thread_generate_in_thread": statistics.median(gen_thr_busy),
        "decode_tok_s_busy_python_thread_stream": statistics.median(stream_busy),
    }
    model.close()
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
