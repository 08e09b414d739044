"""``llama-mtp serve``: the OpenAI-compatible server (llama-server's flags), run with uvicorn."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from ..model import Model
from . import args as cli_args

INSTALL_HINT = "pip install 'llama-mtp[server]'"


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("serve", help="OpenAI-compatible server (/v1/chat/completions, /v1/completions, "
                       "/metrics) with llama-server's flags")
    g = p.add_argument_group("server (llama-server names)")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    g.add_argument("--port", type=int, default=8080)
    g.add_argument("-a", "--alias", default=None, help="model name reported by /v1/models")
    g.add_argument("--api-key", action="append", default=None, metavar="KEY",
                   help="API key(s), comma-separated, repeatable (env: LLAMA_API_KEY)")
    g.add_argument("--api-key-file", type=Path, default=None, metavar="FNAME",
                   help="file with API keys, one per line ('#' comments)")
    g.add_argument("--metrics", action="store_true", help="(always on) serve /metrics")
    g.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    g.add_argument("--max-queue", type=int, default=64,
                   help="generations allowed to wait for a slot before 503 (default: 64); -np "
                   "(with the model options) sets the slots")
    g.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="refuse longer prompts with 400 (default: the context size)")
    g.add_argument("--max-body-size", type=int, default=16 << 20, help="request body limit in bytes")
    g.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="seconds in-flight requests get to finish on shutdown before they are cancelled")
    cli_args.add_generation_args(p)
    p.set_defaults(func=run)


def _keys(a: argparse.Namespace) -> list[str]:
    from ..server.auth import keys_from_env, keys_from_file, parse_keys

    keys = parse_keys(a.api_key) if a.api_key else keys_from_env()
    if a.api_key_file is not None:
        keys += keys_from_file(a.api_key_file)
    return keys


def _exit_after_shutdown(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(a: argparse.Namespace) -> int:
    """Entry point of ``llama-mtp serve``."""
    try:
        from ..server import Limits, serve
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(f"llama-mtp serve: the server needs its extra ({exc.name or exc}): {INSTALL_HINT}",
              file=sys.stderr)
        return 1
    if not logging.getLogger().handlers:  # the access log and uvicorn's lines go to stderr
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    speculator = cli_args.speculator_from(a)
    # -np (cli_args' model options) slots; the engine's own queue as long as the server's; the
    # speculator pinned at load (requests may ask for none or a smaller n_max).
    kwargs = {**cli_args.model_kwargs(a), "max_queue": max(1, a.max_queue), "speculator": speculator}
    limits = Limits(max_body_bytes=a.max_body_size, max_prompt_tokens=a.max_prompt_tokens,
                    max_queue=a.max_queue)
    with Model(a.model, **kwargs) as model:
        # uvicorn shuts down gracefully on SIGINT / SIGTERM, then raises the signal again for the
        # previous handler: the shutdown is complete by then, so that is a normal exit (status 0).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_after_shutdown)
        serve(model, a.host, a.port, speculator=speculator, api_key=_keys(a) or None,
              default_sampling=cli_args.sampling_from(a), model_name=a.alias,
              chat_template=cli_args.chat_template_from(a), limits=limits,
              metrics=not a.no_metrics, shutdown_timeout=a.shutdown_timeout)
    return 0
