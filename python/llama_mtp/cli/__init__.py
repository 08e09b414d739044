"""The ``llama-mtp`` command: run, chat, inspect, bench, demo, synth, serve, rpc-server.

Flags keep llama-cli's names and meanings, so the model card's commands work by swapping the
program name (``llama-cli -m M.gguf -ngl 999 --spec-type draft-mtp --spec-draft-n-max 2 -p ...``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import LlamaMTPError, MissingExtraError
from . import args as cli_args
from . import chat_cmd, demo, inspect_cmd, run, serve_cmd


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="llama-mtp", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show llama.cpp's log (-v: info, -vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (run, chat_cmd, inspect_cmd, demo, serve_cmd):
        module.add_parser(sub)
    synth = sub.add_parser("synth", help="build a synthetic Qwen3.6-architecture MTP model",
                           add_help=False)
    synth.add_argument("synth_args", nargs=argparse.REMAINDER)
    synth.set_defaults(func=None)
    bench = sub.add_parser("bench", help="the model card's tables: MTP off/1/2/3, short and long prompts",
                           add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=None)
    rpc = sub.add_parser("rpc-server", help="serve this machine's devices to other llama-mtp / llama.cpp "
                                            "processes (llama.cpp's rpc-server)", add_help=False)
    rpc.add_argument("rpc_args", nargs=argparse.REMAINDER)
    rpc.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llama-mtp`` console script."""
    cli_args.utf8_stdio()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), "")
    try:
        return _dispatch(argv)
    except (LlamaMTPError, ValueError, FileNotFoundError, OSError, ImportError) as exc:
        print(f"llama-mtp {command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def _dispatch(argv: list[str]) -> int:
    # synth and bench own their whole argument lists.
    if argv and argv[0] == "synth":
        try:
            from ..synthetic import main as synth_main
        except MissingExtraError as exc:
            print(f"llama-mtp synth: error: {exc}", file=sys.stderr)
            return 1
        return int(synth_main(argv[1:]))
    if argv and argv[0] == "bench":
        from .bench import main as bench_main

        return int(bench_main(argv[1:]))
    if argv and argv[0] == "rpc-server":
        from ..rpc import main as rpc_main

        return int(rpc_main(argv[1:]))
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.verbose:
        from .. import set_log_level

        logging.basicConfig(level=logging.DEBUG if a.verbose > 1 else logging.INFO,
                            format="%(name)s: %(message)s")
        set_log_level(logging.DEBUG if a.verbose > 1 else logging.INFO)
    if getattr(a, "list_devices", False):
        return cli_args.print_devices(a)
    cli_args.resolve_model(a)
    return int(a.func(a))
