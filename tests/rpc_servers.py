"""Test helper: RPC server processes on 127.0.0.1 (ours, or llama.cpp's own rpc-server binary)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# benches/refs.py builds llama.cpp's rpc-server (target ggml-rpc-server) here
LLAMA_CPP_RPC_SERVER = ROOT / "benches" / ".cache" / "tools" / "bin" / "ggml-rpc-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until 127.0.0.1:port accepts a connection (the server takes the probe as a client that
    leaves at once, and goes back to accepting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the RPC server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"no RPC server on 127.0.0.1:{port} after {timeout} s")


class RpcServer:
    """One server process; ``endpoint`` is its ``host:port``."""

    def __init__(self, *, llama_cpp: bool = False, threads: int = 1) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        if llama_cpp:
            cmd = [str(LLAMA_CPP_RPC_SERVER), "-H", "127.0.0.1", "-p", str(self.port), "-t", str(threads)]
        else:
            cmd = [sys.executable, "-m", "llama_mtp.rpc", "--port", str(self.port), "-t", str(threads)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(self.port, self.proc)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        """Resident memory of the server process (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
