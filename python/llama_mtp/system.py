"""Facts about this build of llama-mtp and the machine it runs on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import _core

_PACKAGE_DIR = Path(__file__).resolve().parent


def ensure_backend() -> None:
    """Initialise llama.cpp's backends (idempotent). Called by everything that needs them."""
    _core.init_backend(str(_PACKAGE_DIR))


@dataclass(frozen=True)
class DeviceInfo:
    """A compute device that llama.cpp can use."""

    name: str
    """ggml's device name: ``"CPU"``, ``"CUDA0"``, ``"RPC0"`` ..."""
    description: str
    """The hardware, or for an RPC device the server's ``host:port``."""
    type: str
    """``"cpu"``, ``"gpu"``, ``"igpu"``, ``"accel"`` or ``"rpc"``."""
    memory_total: int
    memory_free: int


@dataclass(frozen=True)
class SystemInfo:
    """What this llama-mtp build contains and which devices it sees."""

    llama_commit: str
    """Upstream ggml-org/llama.cpp commit of the vendored source."""
    llama_version: str
    backend_dl: bool
    """True for a portable build: backends (and the CPU variant) are picked at run time."""
    backends: list[str]
    devices: list[DeviceInfo] = field(default_factory=list)
    cpu_features: str = ""
    cuda_compiled: bool = False
    cuda_archs: str = ""
    gpu_offload: bool = False
    """llama.cpp's ``llama_supports_gpu_offload()``: true with a GPU backend, and whenever the RPC
    backend is built (layers may go to RPC servers), so true in every llama-mtp build."""
    rpc: bool = False
    """The RPC backend (ggml-rpc) is built in: ``Model(rpc_servers=...)``, ``llama-mtp rpc-server``."""
    rpc_protocol: str = ""
    """ggml-rpc protocol version; servers and clients must agree on the major number."""


def system_info() -> SystemInfo:
    """Report the llama.cpp commit, compiled backends (CPU variant, CUDA and its archs, RPC) and
    the local devices. RPC servers are not listed here (they are per model:
    :attr:`Model.devices`)."""
    ensure_backend()
    raw = _core.system_info()
    devices = [DeviceInfo(**d) for d in raw.pop("devices")]
    return SystemInfo(devices=devices, **raw)
