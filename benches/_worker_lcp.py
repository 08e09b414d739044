"""Benchmark worker for llama-cpp-python (runs in its own venv, benches/.cache/llama-cpp-python-*).

Request:  {"prompt_file": PATH, "n_predict": N, "pld": bool}
Reply:    {"prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "wall_s", "text"}

Measured the way a user calls it: ``Llama.create_completion`` (greedy). Timing split: the first
call of a stopping criterion marks the end of prompt evaluation plus the first sample (as
llama-server's prompt time); generation runs from there to the last token (n tokens, the first
one included, as llama-server's ``predicted_n``). ``pld``: the same model with
``draft_model=LlamaPromptLookupDecoding(num_pred_tokens=K)`` -- llama-cpp-python's only
speculative option (the library has no MTP; its MTP lives in an example server).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    # llama-cpp-python lives in its own venv (refs.py): to mypy here it is an unknown module
    from llama_cpp import Llama, StoppingCriteriaList  # type: ignore[import-not-found,unused-ignore]
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding  # type: ignore[import-not-found,unused-ignore]

    cfg = json.loads(sys.argv[1])
    models: dict[bool, Llama] = {}

    def get(pld: bool) -> Llama:
        if pld not in models:
            for other in list(models):  # one context at a time (memory)
                models.pop(other).close()
            models[pld] = Llama(
                cfg["model"], n_gpu_layers=0, n_ctx=cfg["n_ctx"], n_batch=cfg["n_batch"],
                n_ubatch=cfg["n_ubatch"], n_threads=cfg["threads"],
                n_threads_batch=cfg["threads"], flash_attn=True, verbose=False, seed=1,
                draft_model=(LlamaPromptLookupDecoding(num_pred_tokens=cfg["pld_tokens"])
                             if pld else None))
        return models[pld]

    get(False)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            llm = get(bool(req.get("pld")))
            with open(req["prompt_file"], encoding="utf-8") as f:
                text = f.read()
            prompt = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            llm.reset()  # no prompt cache between runs
            marks: list[float] = []

            def first_token(input_ids: object, logits: object) -> bool:
                if not marks:
                    marks.append(time.perf_counter())
                return False

            t0 = time.perf_counter()
            out = llm.create_completion(prompt, max_tokens=int(req["n_predict"]), temperature=0.0,
                                        top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                        stopping_criteria=StoppingCriteriaList([first_token]))
            t1 = time.perf_counter()
            n = int(out["usage"]["completion_tokens"])  # type: ignore[index,unused-ignore]
            gen_text = out["choices"][0]["text"]  # type: ignore[index,unused-ignore]
            t_first = marks[0] if marks else t1
            print(json.dumps({"prompt_n": len(prompt), "prompt_ms": (t_first - t0) * 1e3,
                              "predicted_n": n, "predicted_ms": (t1 - t_first) * 1e3,
                              "wall_s": t1 - t0, "text": gen_text}), flush=True)
        except Exception as e:  # reported, the worker goes on
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
