"""``llama-mtp run``: one prompt, streamed, with the card's timing lines (llama-cli's flags)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..chat import ChatResult
from ..model import Model
from ..results import GenerationOutput
from . import args as cli_args
from .report import ReplyPrinter, print_timings


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("run", help="generate from a prompt (llama-cli flags)",
                       description="Generate from -p PROMPT or -f FILE; prints the answer, then "
                                   "prompt tok/s, generation tok/s and draft acceptance.")
    src = p.add_argument_group("prompt")
    src.add_argument("-p", "--prompt", default=None)
    src.add_argument("-f", "--file", type=Path, default=None, help="read the prompt from a UTF-8 file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    cli_args.add_generation_args(p)
    p.set_defaults(func=run)


def read_prompt(a: argparse.Namespace) -> str:
    """The prompt from -p or -f (exactly one)."""
    if (a.prompt is None) == (a.file is None):
        raise SystemExit("error: give exactly one of -p PROMPT or -f PROMPT_FILE")
    if a.file is not None:
        # utf-8-sig: a BOM written by Windows editors is not part of the prompt.
        return str(a.file.read_text(encoding="utf-8-sig"))
    return str(a.prompt)


def run(a: argparse.Namespace) -> int:
    """Entry point of ``llama-mtp run``."""
    prompt = read_prompt(a)
    sampling = cli_args.sampling_from(a)
    speculator = cli_args.speculator_from(a)
    use_chat = a.jinja or a.system_prompt is not None or a.reasoning != "auto" or a.reasoning_budget >= 0
    with Model(a.model, **cli_args.model_kwargs(a)) as model:  # type: ignore[arg-type]
        if use_chat:
            messages = ([{"role": "system", "content": a.system_prompt}] if a.system_prompt else [])
            messages.append({"role": "user", "content": prompt})
            chat_kwargs: dict[str, Any] = dict(
                speculator=speculator, enable_thinking=a.reasoning != "off",
                reasoning_budget=None if a.reasoning_budget < 0 else a.reasoning_budget,
                chat_template=cli_args.chat_template_from(a))
            if a.json:
                result = model.chat(messages, sampling, **chat_kwargs)
                print(json.dumps(chat_json(a, result), ensure_ascii=False))
                return 0
            stream = model.chat_stream(messages, sampling, **chat_kwargs)
            printer = ReplyPrinter(sys.stdout, sys.stderr)  # the answer alone on stdout
            for delta in stream:
                printer.reasoning(delta.reasoning_content)
                printer.content(delta.content)
            printer.finish()
            print()
            assert stream.result is not None
            print_timings(stream.result.stats)
            return 0
        if a.json:
            out = model.generate(prompt, sampling, speculator=speculator)
            print(json.dumps(completion_json(a, out), ensure_ascii=False))
            return 0
        gen = model.stream(prompt, sampling, speculator=speculator)
        for chunk in gen:
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
        print()
        assert gen.output is not None
        print_timings(gen.output.stats)
    return 0


def completion_json(a: argparse.Namespace, out: GenerationOutput) -> dict[str, Any]:
    """The ``--json`` document of a raw completion."""
    return {"model": a.model, "prompt": read_prompt(a), "spec_type": a.spec_type,
            "spec_draft_n_max": a.spec_n_max if a.spec_n_max == "auto" else int(a.spec_n_max), "text": out.text, "tokens": out.tokens, "finish_reason": out.finish_reason,
            "stop_reason": out.stop_reason, "timings": out.stats.to_dict()}


def chat_json(a: argparse.Namespace, out: ChatResult) -> dict[str, Any]:
    """The ``--json`` document of a chat reply."""
    return {"model": a.model, "prompt": read_prompt(a), "spec_type": a.spec_type,
            "spec_draft_n_max": a.spec_n_max if a.spec_n_max == "auto" else int(a.spec_n_max), "content": out.content, "reasoning_content": out.reasoning_content,
            "tool_calls": [vars(c) for c in out.tool_calls], "text": out.text,
            "finish_reason": out.finish_reason, "timings": out.stats.to_dict()}
