"""``llama-mtp demo``: the same prompt without MTP, with MTP at a fixed draft length, and with the
adaptive draft length (``n_max="auto"``), on a cached synthetic model when no model is given;
shows the speeds, the draft acceptance, the speed-ups, and that the outputs match."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import MissingExtraError
from ..model import Model
from ..results import GenerationOutput
from ..sampling import SamplingParams
from ..speculator import Speculator
from .report import timing_lines

DEFAULT_PROMPT = "Multi-token prediction lets a model draft several tokens at once, and"


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("demo", help="MTP off vs on, on a synthetic model unless -m is given")
    p.add_argument("-m", "--model", default=None, help="GGUF with an MTP head (default: build a synthetic one)")
    p.add_argument("--preset", default="bench", help="synthetic preset when no model is given")
    p.add_argument("--quant", default="Q4_K_M", help="synthetic model quantization")
    p.add_argument("--agreement", type=float, default=0.8, help="synthetic MTP agreement")
    p.add_argument("-p", "--prompt", default=DEFAULT_PROMPT)
    p.add_argument("-n", "--n-predict", dest="n_predict", type=int, default=128)
    p.add_argument("--spec-draft-n-max", dest="n_max", type=int, default=2)
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-ngl", "--gpu-layers", dest="gpu_layers", type=int, default=-1)
    p.add_argument("-c", "--ctx-size", type=int, default=4096)
    p.add_argument("--cache-dir", type=Path, default=None, help="where synthetic models are kept")
    p.set_defaults(func=run)


def default_cache_dir() -> Path:
    """``$LLAMA_MTP_CACHE`` or ``~/.cache/llama_mtp``."""
    return Path(os.environ.get("LLAMA_MTP_CACHE", Path.home() / ".cache" / "llama_mtp"))


def synthetic_model(a: argparse.Namespace) -> Path:
    """Build (once) and return the synthetic demo model."""
    try:
        from .. import synthetic
    except MissingExtraError as exc:
        raise MissingExtraError(f"{exc} Or pass a model: llama-mtp demo -m MODEL.gguf") from None

    directory = (a.cache_dir or default_cache_dir()) / "models"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"synthetic-{a.preset}-{a.quant}-agree{a.agreement:.2f}.gguf"
    if not path.exists():
        print(f"building the synthetic '{a.preset}' model ({a.quant}, MTP agreement {a.agreement}) "
              f"into {path} (once) ...", file=sys.stderr)
        synthetic.build(path, preset=a.preset, quant=a.quant, mtp_agreement=a.agreement)
    return path


def run(a: argparse.Namespace) -> int:
    """Entry point of ``llama-mtp demo``."""
    path = Path(a.model) if a.model else synthetic_model(a)
    greedy = SamplingParams.greedy(max_tokens=a.n_predict, ignore_eos=not a.model)
    with Model(path, n_gpu_layers=a.gpu_layers, n_ctx=a.ctx_size, n_threads=a.threads) as model:
        if not model.has_mtp:
            print(f"{path} has no MTP head: {model.mtp_status.problem or 'nextn_predict_layers is 0'}",
                  file=sys.stderr)
            return 1
        print(f"model: {path.name}  ({model.description}, {model.n_params / 1e9:.2f} B params)", file=sys.stderr)
        # Warm-up (page the weights in) so that neither run pays for it.
        model.generate(a.prompt, SamplingParams.greedy(max_tokens=4), cache_prompt=False)
        plain = model.generate(a.prompt, greedy, cache_prompt=False)
        mtp = model.generate(a.prompt, greedy, speculator=Speculator.mtp(n_max=a.n_max), cache_prompt=False)
        # the adaptive controller learns this machine's costs and the text's acceptance as it
        # goes: one run to learn, then the measured one (as any long-running process would be)
        model.generate(a.prompt, greedy, speculator=Speculator.mtp("auto"), cache_prompt=False)
        auto = model.generate(a.prompt, greedy, speculator=Speculator.mtp("auto"), cache_prompt=False)
    report(plain, mtp, auto, a.n_max)
    return 0 if plain.tokens == mtp.tokens == auto.tokens else 1


def report(plain: GenerationOutput, mtp: GenerationOutput, auto: GenerationOutput, n_max: int) -> None:
    """Print the comparison."""
    print("\n--- output (greedy) ---")
    print(mtp.text)
    print("\n--- MTP off ---")
    print("\n".join(timing_lines(plain.stats)))
    print(f"\n--- MTP on (draft-mtp, n_max {n_max}) ---")
    print("\n".join(timing_lines(mtp.stats)))
    print('\n--- MTP on, adaptive (draft-mtp, n_max "auto") ---')
    print("\n".join(timing_lines(auto.stats)))
    hist = auto.stats.draft_len_histogram
    if sum(hist):
        print("draft lengths chosen: " + ", ".join(f"{k}: {n}" for k, n in enumerate(hist) if n))
    else:
        print("draft lengths chosen: none -- no draft length paid on the first run, so this one was "
              "decoded plainly, with no MTP work (auto speculates again every 4th such request)")
    base = plain.stats.predicted_per_second
    speedup = mtp.stats.predicted_per_second / base if base else 0.0
    auto_speedup = auto.stats.predicted_per_second / base if base else 0.0
    same = plain.tokens == mtp.tokens == auto.tokens
    print(f"\ngeneration: {base:.2f} tok/s without MTP, {mtp.stats.predicted_per_second:.2f} tok/s with MTP"
          f" (x{speedup:.2f}, draft acceptance {mtp.stats.draft_acceptance_rate * 100:.1f} %), "
          f"{auto.stats.predicted_per_second:.2f} tok/s adaptive (x{auto_speedup:.2f})")
    print(f"outputs identical: {'yes' if same else 'NO (this is a bug: please report it)'} "
          f"({len(plain.tokens)} tokens)")
    if speedup < 1.0:
        print("note: MTP pays off where decoding is bound by memory bandwidth (GPUs, large models). "
              "Here verifying a draft of k tokens costs nearly k+1 single steps (decoding is bound "
              "by compute on this CPU), so the drafts cannot win time back; llama.cpp's own "
              "llama-server shows the same ratio on this machine (see README, Performance).")
