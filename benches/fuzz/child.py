"""The fuzzer's child process: runs a batch of mutants, one after the other, in this process.

Usage (by :mod:`fuzz.runner`): ``python -m fuzz.child JOB.json``. For each seed it appends to the
job's results file a ``start`` line, ``stage`` lines, and a result line, each flushed, so that
the parent knows which mutant was running when this process died.

Per mutant: write the file, ``Model(path)``, tokenize, generate 4 tokens (with
``Speculator.mtp(2)`` when the model has an MTP head), detokenize; for every third seed and every
broken chat template also a two-token ``chat`` (the file's template rendered by llama.cpp's
``common`` chat code). A Python exception from ``llama_mtp.errors`` or a ``ValueError`` is the
good outcome for a broken file ("rejected");
any other exception is "unexpected"; the process dying is what the parent records as an abort.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

from .mutate import Base, mutate

PROMPT = "Once upon a time, the quick brown fox"


def _limit_memory(limit_mb: int) -> None:
    # a sanitizer runtime reserves terabytes of address space for its shadow memory
    if limit_mb <= 0 or "san" in os.environ.get("LD_PRELOAD", ""):
        return
    import resource
    soft = limit_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < soft:
        soft = hard
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _emit(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def run_one(path: Path, seed: int, out: IO[str], gen_tokens: int, chat: bool) -> dict[str, Any]:
    """Load, tokenize, generate; returns the outcome record (without seed/strategy)."""
    from llama_mtp import LlamaMTPError, Model, SamplingParams, Speculator

    stage = "load"
    t0 = time.perf_counter()
    try:
        _emit(out, {"seed": seed, "stage": stage})
        with Model(path, n_ctx=256, n_batch=64, n_ubatch=64, n_threads=1) as model:
            stage = "tokenize"
            _emit(out, {"seed": seed, "stage": stage})
            tokens = model.tokenize(PROMPT) or [0]
            stage = "generate"
            _emit(out, {"seed": seed, "stage": stage})
            spec = Speculator.mtp(2) if model.has_mtp else Speculator.none()
            sampling = (SamplingParams(temperature=0, top_k=1, max_tokens=gen_tokens)
                        if seed % 2 == 0 else
                        SamplingParams(temperature=0.8, top_k=40, max_tokens=gen_tokens, seed=seed))
            result = model.generate(tokens, sampling, speculator=spec)
            stage = "detokenize"
            _emit(out, {"seed": seed, "stage": stage})
            model.detokenize(list(result.tokens))
            if chat:
                stage = "chat"
                _emit(out, {"seed": seed, "stage": stage})
                model.chat([{"role": "user", "content": "Hello"}],
                           SamplingParams(temperature=0, top_k=1, max_tokens=2), speculator=spec)
        return {"outcome": "ok", "stage": "done", "mtp": spec.type != "none",
                "n_tokens": len(result.tokens), "ms": _ms(t0)}
    except (LlamaMTPError, ValueError) as e:
        return {"outcome": "rejected", "stage": stage, "error_type": type(e).__name__,
                "message": str(e)[:600], "ms": _ms(t0)}
    except Exception as e:  # noqa: BLE001 - the point: anything else is a finding
        return {"outcome": "unexpected", "stage": stage, "error_type": type(e).__name__,
                "message": str(e)[:600], "traceback": traceback.format_exc()[-2000:],
                "ms": _ms(t0)}


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


def _selftest_hooks(seed: int, ran: set[int]) -> None:
    """Deaths on demand, for the tests of the harness itself (tests/test_fuzz_gguf.py):
    ``FUZZ_SELFTEST='{"abort": [seeds], "abort_after": [[earlier, seed]], "hang": [seeds]}'``."""
    spec = os.environ.get("FUZZ_SELFTEST")
    if not spec:
        return
    hooks = json.loads(spec)
    if seed in hooks.get("abort", []):
        sys.stderr.write(f"selftest.cpp:1: GGML_ASSERT(seed != {seed}) failed\n")
        sys.stderr.flush()
        os.abort()
    for earlier, later in hooks.get("abort_after", []):
        if seed == later and earlier in ran:
            os.abort()
    if seed in hooks.get("hang", []):
        time.sleep(3600)


def _abort_at_exit(ran: set[int]) -> None:
    spec = os.environ.get("FUZZ_SELFTEST")
    if spec and ran & set(json.loads(spec).get("abort_at_exit", [])):
        os.abort()


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    faulthandler.enable()
    _limit_memory(int(job.get("memory_mb", 0)))
    base = Base(Path(job["base"]).read_bytes())
    workdir = Path(job["workdir"])
    only = job.get("strategy")
    ran: set[int] = set()
    with open(job["results"], "a", encoding="utf-8") as out:
        for seed in job["seeds"]:
            _emit(out, {"seed": seed, "start": True})
            _selftest_hooks(seed, ran)
            ran.add(seed)
            try:
                mutant = mutate(base, seed, only)
            except Exception:  # noqa: BLE001 - a bug of the fuzzer, not a finding: reported as such
                _emit(out, {"seed": seed, "strategy": "?", "detail": "", "outcome": "harness_error",
                            "stage": "mutate", "traceback": traceback.format_exc()[-2000:]})
                continue
            path = workdir / f"mutant-{os.getpid()}-{seed}.gguf"
            path.write_bytes(mutant.data)
            try:
                # a third of the seeds, and every broken template, also chat
                chat = seed % 3 == 0 or mutant.strategy == "chat_template"
                record = run_one(path, seed, out, int(job.get("gen_tokens", 4)), chat)
            finally:
                path.unlink(missing_ok=True)
            record.update(seed=seed, strategy=mutant.strategy, detail=mutant.detail[:300],
                          size=len(mutant.data))
            _emit(out, record)
        _emit(out, {"done": True})
    _abort_at_exit(ran)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
