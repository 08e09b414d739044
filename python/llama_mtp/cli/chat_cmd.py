"""``llama-mtp chat``: interactive multi-turn chat (the shared prefix is reused between turns)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..model import Model
from . import args as cli_args
from .report import ReplyPrinter, print_timings


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("chat", help="interactive chat; /exit quits, Ctrl-C stops the current answer")
    p.add_argument("--hide-reasoning", action="store_true", help="do not show the thinking block")
    p.add_argument("--timings", action="store_true", help="print timing lines after each answer")
    cli_args.add_generation_args(p)
    p.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    """Entry point of ``llama-mtp chat``."""
    sampling = cli_args.sampling_from(a)
    speculator = cli_args.speculator_from(a)
    template = cli_args.chat_template_from(a)
    messages: list[dict[str, Any]] = []
    if a.system_prompt:
        messages.append({"role": "system", "content": a.system_prompt})
    with Model(a.model, **cli_args.model_kwargs(a)) as model:  # type: ignore[arg-type]
        print("llama-mtp chat: type a message; /exit to quit, Ctrl-C stops an answer.", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except (EOFError, KeyboardInterrupt):
                print(file=sys.stderr)
                return 0
            if line.strip() in ("/exit", "/quit"):
                return 0
            if not line.strip():
                continue
            messages.append({"role": "user", "content": line})
            stream = model.chat_stream(messages, sampling, speculator=speculator,
                                       enable_thinking=a.reasoning != "off",
                                       reasoning_budget=None if a.reasoning_budget < 0 else a.reasoning_budget,
                                       chat_template=template)
            printer = ReplyPrinter(sys.stdout, None if a.hide_reasoning else sys.stdout)
            try:
                for delta in stream:
                    printer.reasoning(delta.reasoning_content)
                    printer.content(delta.content)
                printer.finish()
            except KeyboardInterrupt:
                stream.close()  # stops the native loop; the conversation goes on
                print("\n[stopped]", file=sys.stderr)
                messages.pop()
                continue
            print()
            if stream.result is not None:
                messages.append(stream.result.message.to_openai())
                if a.timings:
                    print_timings(stream.result.stats)
