"""``llama-mtp rpc-server`` (also ``python -m llama_mtp.rpc``): llama.cpp's RPC server.

It serves this machine's devices (its GPUs, else its CPU) to a model loaded elsewhere with
``Model(..., rpc_servers=["host:port"])`` or ``llama-mtp run --rpc host:port`` -- or to
llama.cpp's own ``llama-cli`` / ``llama-server --rpc``: it is ggml's own server
(``ggml_backend_rpc_start_server``), speaking the same protocol as llama.cpp's ``rpc-server``.
Flags keep that tool's names (``-H``, ``-p``, ``-t``, ``-d``, ``-c``).

The protocol has no authentication and no encryption: whoever reaches the port can allocate
memory and run computations on the machine and read what it holds. It therefore listens on
127.0.0.1 unless told otherwise, and a non-loopback address needs ``--allow-remote``; use it
only on a network you trust (or through an SSH tunnel / VPN).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from . import _core
from .system import ensure_backend, system_info

DEFAULT_PORT = 50052

NO_AUTH_WARNING = ("WARNING: the RPC protocol has no authentication and no encryption: anyone who can "
                   "reach {endpoint} can use this machine's memory and devices and read the data on them. "
                   "Expose it only to a network you trust.")


def default_cache_dir() -> Path:
    """llama.cpp's rpc-server cache directory: ``$LLAMA_CACHE/rpc``, else ``~/.cache/llama.cpp/rpc``
    (``%LOCALAPPDATA%\\llama.cpp\\rpc`` on Windows)."""
    if os.environ.get("LLAMA_CACHE"):
        return Path(os.environ["LLAMA_CACHE"]) / "rpc"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "llama.cpp" / "rpc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "llama.cpp" / "rpc"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llama.cpp" / "rpc"


def resolve_host(host: str) -> str:
    """The IPv4 address to bind (ggml-rpc binds IPv4 literals only); ``localhost`` -> 127.0.0.1."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        raise ValueError(f"cannot resolve host {host!r} to an IPv4 address: {exc}") from None


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, threads: int | None = None,
          cache_dir: str | os.PathLike[str] | None = None, devices: Sequence[str] = (),
          allow_remote: bool = False) -> None:
    """Serve ggml-rpc clients on ``host:port`` until the process is stopped (blocks).

    ``threads``: CPU threads when the CPU is served (default: half the cores, as llama.cpp's
    rpc-server); ``cache_dir``: keep large tensors sent by clients there, so a client that loads
    the same model again sends only their hashes; ``devices``: names of the devices to serve
    (default: every GPU, else the CPU). A non-loopback ``host`` needs ``allow_remote=True``.
    Raises ``ValueError`` for bad arguments and ``RuntimeError`` if it cannot listen.
    """
    address = resolve_host(host)
    if not 1 <= int(port) <= 65535:
        raise ValueError("port must be in 1-65535")
    if not ipaddress.IPv4Address(address).is_loopback and not allow_remote:
        raise ValueError(f"{host} is not a loopback address: the RPC protocol has no authentication, so "
                         "listening on a network needs --allow-remote (allow_remote=True)")
    ensure_backend()
    if not system_info().rpc:
        raise RuntimeError("this llama-mtp build has no RPC backend")
    cache = ""
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache = os.fspath(cache_dir)
    _core.rpc_serve(address, int(port), cache, int(threads or 0), list(devices))


def build_parser() -> argparse.ArgumentParser:
    """Options of ``llama-mtp rpc-server`` (llama.cpp rpc-server's names)."""
    p = argparse.ArgumentParser(
        prog="llama-mtp rpc-server",
        description="Serve this machine's devices to llama-mtp / llama.cpp clients over ggml-rpc "
                    "(llama.cpp's rpc-server protocol). No authentication: loopback unless --allow-remote.")
    p.add_argument("-H", "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("-p", "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    p.add_argument("-t", "--threads", type=int, default=None,
                   help="CPU threads when serving the CPU (default: half the cores)")
    p.add_argument("-d", "--device", default=None,
                   help="comma-separated devices to serve (default: the GPUs, else the CPU)")
    p.add_argument("-c", "--cache", nargs="?", const="", default=None, metavar="DIR",
                   help="cache large tensors on disk (default DIR: $LLAMA_CACHE/rpc or "
                        "~/.cache/llama.cpp/rpc, as llama.cpp)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (the protocol has no authentication)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``llama-mtp rpc-server`` and ``python -m llama_mtp.rpc``."""
    a = build_parser().parse_args(argv)
    if a.threads is not None and a.threads <= 0:
        print("llama-mtp rpc-server: error: --threads must be > 0", file=sys.stderr)
        return 1
    cache: str | Path | None = None
    if a.cache is not None:
        cache = a.cache or default_cache_dir()
    devices = [d for d in (a.device or "").replace("/", ",").split(",") if d]
    try:
        address = resolve_host(a.host)
        if not ipaddress.IPv4Address(address).is_loopback:
            if not a.allow_remote:
                raise ValueError(f"{a.host} is not a loopback address: the RPC protocol has no authentication; "
                                 "add --allow-remote to listen on a network anyway")
            print(NO_AUTH_WARNING.format(endpoint=f"{a.host}:{a.port}"), file=sys.stderr, flush=True)
        # Ctrl-C / SIGTERM end the process at once, as llama.cpp's rpc-server: the server owns
        # nothing that needs cleaning up, and it never returns to Python while it serves.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        serve(address, a.port, threads=a.threads, cache_dir=cache, devices=devices, allow_remote=True)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"llama-mtp rpc-server: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
