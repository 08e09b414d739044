"""llama-mtp: native multi-token-prediction speculative decoding for Qwen3.5/3.6 GGUF models.

Quick start::

    from llama_mtp import Model
    with Model("model.gguf", n_gpu_layers=-1) as model:
        print(model.arch, model.has_mtp, model.tokenize("hello"))
"""

from __future__ import annotations

from . import _native_libs  # noqa: F401  # Windows: the DLLs next to _core (no-op elsewhere)
from . import _cuda_runtime  # noqa: F401  # CUDA builds: load cudart/cuBLAS from pip before _core
from ._log import get_log_level, set_log_level
from .errors import (
    ChatTemplateError,
    ContextOverflowError,
    DecodeError,
    LlamaMTPError,
    ModelClosedError,
    ModelLoadError,
    MTPUnavailableError,
    QueueFullError,
    QuantizeError,
)
from ._core import CancelToken
from .chat import ChatDelta, ChatMessage, ChatResult, ChatStats, ToolCall, ToolCallDelta
from .engine import EngineMetrics
from .model import Model
from .results import GenerationChunk, GenerationOutput, GenerationStats, TokenLogprob
from .sampling import SamplingParams
from .speculator import SPEC_TYPES, Speculator
from .system import SystemInfo, system_info
from .quant import QUANT_TYPES, quantize

__version__ = "0.1.0"

__all__ = [
    "Model",
    "SamplingParams",
    "Speculator",
    "SPEC_TYPES",
    "GenerationOutput",
    "GenerationStats",
    "GenerationChunk",
    "TokenLogprob",
    "EngineMetrics",
    "CancelToken",
    "ChatMessage",
    "ChatResult",
    "ChatDelta",
    "ChatStats",
    "ToolCall",
    "ToolCallDelta",
    "SystemInfo",
    "system_info",
    "quantize",
    "QUANT_TYPES",
    "set_log_level",
    "get_log_level",
    "LlamaMTPError",
    "ModelLoadError",
    "MTPUnavailableError",
    "ContextOverflowError",
    "ChatTemplateError",
    "DecodeError",
    "ModelClosedError",
    "QueueFullError",
    "QuantizeError",
    "__version__",
]
