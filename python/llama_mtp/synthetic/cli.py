"""``llama-mtp synth``: build a synthetic model from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

__all__ = ["main", "make_parser"]


def make_parser(prog: str = "llama-mtp synth") -> argparse.ArgumentParser:
    """The argument parser of ``llama-mtp synth``."""
    from .presets import PRESETS
    p = argparse.ArgumentParser(
        prog=prog, description="Write a synthetic Qwen3.6-style (qwen35 + MTP) GGUF model whose "
        "greedy output and MTP acceptance are known in advance.")
    p.add_argument("output", help="the .gguf file to write")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="model shape (default: tiny)")
    p.add_argument("--quant", default="Q4_K_M",
                   help="F32, F16, Q8_0 or a llama.cpp quantization such as Q4_K_M (default)")
    p.add_argument("--mtp-agreement", type=float, default=0.8,
                   help="fraction of MTP drafts the main model accepts, in [0, 1] (default 0.8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--behaviour", default="text", choices=["text", "chat", "varying"],
                   help="text: cycle through a passage; chat: <think> ... </think> answer")
    p.add_argument("--no-mtp", action="store_true", help="write no MTP block")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="override the vocabulary size (248320 = the real tokenizer)")
    p.add_argument("--method", default="auto", choices=["auto", "direct", "requantize"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``llama-mtp synth`` (``argv`` without the program name). Returns the
    exit status."""
    from ..errors import LlamaMTPError
    from .build import build, read_behaviour
    args = make_parser().parse_args(list(argv) if argv is not None else None)
    t0 = time.perf_counter()
    try:
        path = build(args.output, preset=args.preset, quant=args.quant,
                     mtp_agreement=args.mtp_agreement, seed=args.seed, behaviour=args.behaviour,
                     mtp=not args.no_mtp, vocab_size=args.vocab_size, method=args.method,
                     threads=args.threads, progress=False if args.quiet else None)
    except (ValueError, OSError, LlamaMTPError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    beh = read_behaviour(path)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 2**20:.1f} MiB) in {dt:.1f} s: preset {args.preset}, "
          f"{args.quant.upper()}, {'no MTP' if not beh.has_mtp else f'MTP agreement {beh.mtp_agreement:g}'}, "
          f"behaviour {beh.kind} ({beh.n}-token cycle)")
    return 0
