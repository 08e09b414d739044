"""Benchmark worker for llama-mtp: one model loaded, JSON requests on stdin, JSON results on stdout.

Config (argv[1]): {"model", "threads", "n_ctx", "n_batch", "n_ubatch"} and optionally
"spec_n_max" (the MTP speculator fixed at load, as llama-server's --spec-type draft-mtp
--spec-draft-n-max K, or "auto": the first request then does not configure it), "model_kwargs"
(further Model keyword arguments, e.g. {"load_mtp": false}) and "log_auto" (true: each reply
carries the adaptive controller's debug lines). Loaded without the warm-up decode, as the
benchmarks start llama-server (--no-warmup).
Request:  {"prompt_file": PATH, "n_predict": N, "n_max": K (0 = plain) or "auto",
           "ignore_eos": false, "stream": false}
Reply:    {"prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "draft_n",
           "draft_n_accepted", "draft_len_histogram", "tokens", "log"}  (llama-server's timing
           names)
Batch:    {"prompt_files": [PATH, ...], ...} generates all prompts at once (one request each,
          batched by the engine: load the model with model_kwargs {"n_parallel": N}); the reply
          sums the counts and lists "tokens" per prompt.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from llama_mtp import Model


def main() -> int:
    from llama_mtp import Model, SamplingParams, Speculator

    cfg = json.loads(sys.argv[1])
    kwargs: dict[str, Any] = dict(cfg.get("model_kwargs", {}))
    if "warmup" in inspect.signature(Model).parameters:  # a build before it had no warm-up
        kwargs.setdefault("warmup", False)
    if cfg.get("spec_n_max"):
        kwargs.setdefault("speculator", Speculator.mtp(n_max(cfg["spec_n_max"])))
    log: list[str] = []
    if cfg.get("log_auto"):
        import logging

        import llama_mtp

        class AutoLines(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage().startswith("adaptive:"):
                    log.append(record.getMessage())

        logging.getLogger("llama_mtp").addHandler(AutoLines())
        llama_mtp.set_log_level("DEBUG")
    model = Model(cfg["model"], n_threads=cfg["threads"], n_threads_batch=cfg["threads"],
                  n_ctx=cfg["n_ctx"], n_batch=cfg["n_batch"], n_ubatch=cfg["n_ubatch"], **kwargs)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if "prompt_files" in req:
            print(json.dumps(batch(model, req)), flush=True)
            continue
        with open(req["prompt_file"], encoding="utf-8") as f:
            text = f.read()
        tokens = model.tokenize(text, add_special=True, parse_special=True)
        sp = SamplingParams.greedy(max_tokens=int(req["n_predict"]), ignore_eos=bool(req.get("ignore_eos")))
        spec = Speculator.mtp(n_max(req["n_max"])) if req.get("n_max") else None
        t0 = time.perf_counter()
        if req.get("stream"):
            stream = model.stream(tokens, sp, speculator=spec, cache_prompt=False)
            for _ in stream:
                pass
            out = stream.output
            assert out is not None
        else:
            out = model.generate(tokens, sp, speculator=spec, cache_prompt=False)
        wall = time.perf_counter() - t0
        s = out.stats
        print(json.dumps({"prompt_n": s.prompt_n, "prompt_ms": s.prompt_ms,
                          "predicted_n": s.predicted_n, "predicted_ms": s.predicted_ms,
                          "draft_n": s.draft_n, "draft_n_accepted": s.draft_n_accepted,
                          "draft_len_histogram": list(s.draft_len_histogram),
                          "wall_s": wall, "tokens": out.tokens, "log": log}), flush=True)
        log.clear()
    return 0


def n_max(value: Any) -> "int | Literal['auto']":
    """A request's or the config's n_max: a number, or "auto"."""
    return "auto" if value == "auto" else int(value)


def batch(model: "Model", req: dict[str, Any]) -> dict[str, Any]:
    """Every prompt of ``req["prompt_files"]`` at once, as concurrent clients would send them."""
    from llama_mtp import SamplingParams, Speculator

    prompts = []
    for name in req["prompt_files"]:
        with open(name, encoding="utf-8") as f:
            prompts.append(model.tokenize(f.read(), add_special=True, parse_special=True))
    sp = SamplingParams.greedy(max_tokens=int(req["n_predict"]))
    spec = Speculator.mtp(n_max(req["n_max"])) if req.get("n_max") else None
    t0 = time.perf_counter()
    outs = model.generate(prompts, sp, speculator=spec, cache_prompt=False)
    wall = time.perf_counter() - t0
    return {"prompt_n": sum(o.stats.prompt_n for o in outs),
            "prompt_ms": max(o.stats.prompt_ms for o in outs),
            "predicted_n": sum(o.stats.predicted_n for o in outs), "predicted_ms": wall * 1e3,
            "draft_n": sum(o.stats.draft_n for o in outs),
            "draft_n_accepted": sum(o.stats.draft_n_accepted for o in outs),
            "wall_s": wall, "tokens": [o.tokens for o in outs]}


if __name__ == "__main__":
    sys.exit(main())
