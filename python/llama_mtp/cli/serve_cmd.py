"""``llama-mtp serve``: an OpenAI-style ``/v1/chat/completions`` endpoint."""

from __future__ import annotations

import argparse
from typing import Any

from ..model import Model
from . import args as cli_args


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("serve", help="serve /v1/chat/completions (OpenAI style) over HTTP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--alias", default=None, help="model name reported by /v1/models")
    cli_args.add_generation_args(p)
    p.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    """Entry point of ``llama-mtp serve``."""
    from ..server import serve

    with Model(a.model, **cli_args.model_kwargs(a)) as model:  # type: ignore[arg-type]
        serve(model, a.host, a.port, speculator=cli_args.speculator_from(a),
              default_sampling=cli_args.sampling_from(a), model_name=a.alias,
              chat_template=cli_args.chat_template_from(a))
    return 0
