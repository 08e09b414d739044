"""Mutation fuzzing of GGUF model files: nothing a file contains may abort the Python process.

Each mutant of a small, complete synthetic model (raw: byte flips, truncations, overwritten
integers, spliced ranges; structure-aware: wrong types for known keys, array lengths, vocabulary
damage, hyperparameters llama.cpp does not check, tensor dimensions / types / offsets / names,
the MTP head against ``nextn_predict_layers``) is loaded in a child process, many per child:
``Model(path)``, tokenize, generate 4 tokens with ``Speculator.mtp(2)``, detokenize. A child
that dies is replaced, and the mutant that killed it is isolated, recorded with its seed,
strategy and llama.cpp's assertion text, and reproducible from its seed.

    python benches/fuzz_gguf.py -n 10000 --jobs 1 --out benches/results/fuzz-gguf-10k
    python benches/fuzz_gguf.py --reproduce 1234          # one mutant, stderr shown
    python benches/fuzz_gguf.py --reproduce 1234 --keep bad.gguf

Details: benches/README.md ("Fuzzing GGUF files").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz.base import BASES, base_path  # noqa: E402
from fuzz.mutate import Base, mutate, strategy_names  # noqa: E402
from fuzz.report import markdown, summarize  # noqa: E402
from fuzz.runner import Runner, why  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _git() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _machine() -> str:
    import os
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def reproduce(args: argparse.Namespace, base_file: Path) -> int:
    base = Base(base_file.read_bytes())
    mutant = mutate(base, args.reproduce, args.strategy)
    print(f"seed {mutant.seed}: {mutant.strategy}: {mutant.detail} ({len(mutant.data):,} bytes)")
    if args.keep:
        Path(args.keep).write_bytes(mutant.data)
        print(f"wrote {args.keep}")
    runner = Runner(base_file, batch_size=1, timeout_s=args.timeout, memory_mb=args.memory_mb,
                    strategy=args.strategy)
    try:
        run = runner.spawn([args.reproduce])
    finally:
        runner.close()
    if run.died:
        cls, text = why(run.stderr, run.returncode, run.hung)
        print(f"DIED (return code {run.returncode}, stage {run.stage}): {cls}")
        print(run.stderr[-6000:])
        return 1
    print(json.dumps(run.records.get(args.reproduce), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--mutants", type=int, default=1000)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--base", default="qwen35", choices=sorted(BASES))
    p.add_argument("--model", type=Path, help="fuzz this GGUF instead of a synthetic base")
    p.add_argument("--strategy", choices=strategy_names(), help="only this strategy")
    p.add_argument("--jobs", type=int, default=1, help="child processes at a time")
    p.add_argument("--batch", type=int, default=100, help="mutants per child process")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without progress = hang")
    p.add_argument("--memory-mb", type=int, default=6144,
                   help="address-space limit per child (0: none, for sanitizer builds)")
    p.add_argument("--nice", type=int, default=0, help="niceness added to the children")
    p.add_argument("--cache", type=Path, default=ROOT / "benches" / ".cache" / "fuzz")
    p.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    p.add_argument("--reproduce", type=int, metavar="SEED", help="run one mutant and show why")
    p.add_argument("--keep", type=Path, help="with --reproduce: write the mutant here")
    args = p.parse_args(argv)

    base_file = args.model or base_path(args.base, args.cache)
    if args.reproduce is not None:
        return reproduce(args, base_file)

    raw = base_file.read_bytes()
    t0 = time.monotonic()
    last = [0.0]

    def progress(done: int, found: int) -> None:
        if time.monotonic() - last[0] > 30 or done == args.mutants:
            last[0] = time.monotonic()
            rate = done / max(1e-9, time.monotonic() - t0)
            print(f"  {done:,}/{args.mutants:,} mutants, {found} abort(s), {rate:.1f}/s",
                  file=sys.stderr, flush=True)

    runner = Runner(base_file, batch_size=args.batch, jobs=args.jobs, timeout_s=args.timeout,
                    memory_mb=args.memory_mb, strategy=args.strategy, nice=args.nice,
                    progress=progress)
    try:
        runner.run(range(args.seed_start, args.seed_start + args.mutants))
    finally:
        runner.close()
    elapsed = time.monotonic() - t0
    meta = {
        "command": "python benches/fuzz_gguf.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "base": args.base if args.model is None else str(args.model),
        "base_args": BASES.get(args.base) if args.model is None else None,
        "base_sha256": hashlib.sha256(raw).hexdigest(), "base_size": len(raw),
        "reproduce_args": (f"--base {args.base}" if args.model is None else f"--model {args.model}")
        + (f" --strategy {args.strategy}" if args.strategy else ""),
        "seed_start": args.seed_start, "n_seeds": args.mutants, "strategy": args.strategy,
        "jobs": args.jobs, "batch_size": args.batch, "children": runner.children,
        "elapsed_s": round(elapsed, 1), "git": _git(), "machine": _machine(),
    }
    summary = summarize(runner.records, runner.findings, meta)
    text = markdown(summary)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)
        print(f"wrote {args.out.with_suffix('.md')} and .json", file=sys.stderr)
    print(text)
    bad = ("abort", "hang", "unexpected", "harness_error")
    return 1 if any(summary["outcomes"][k] for k in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
