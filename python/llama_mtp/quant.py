"""Quantizing GGUF models with llama.cpp's own quantizer."""

from __future__ import annotations

import os
from pathlib import Path

from . import _core
from .system import ensure_backend

QUANT_TYPES: tuple[str, ...] = tuple(_core.quantization_types())
"""Quantization names accepted by :func:`quantize`, spelled as ``llama-quantize`` spells them."""


def quantize(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    quant: str,
    *,
    threads: int | None = None,
    allow_requantize: bool = False,
) -> Path:
    """Write ``dst`` as a ``quant`` (e.g. ``"Q4_K_M"``) version of the GGUF model ``src``.

    Raises ``ValueError`` for an unknown type (the message lists the known ones),
    ``FileNotFoundError`` / :class:`~llama_mtp.errors.ModelLoadError` for a missing or broken
    source, and :class:`~llama_mtp.errors.QuantizeError` (with llama.cpp's reason) when llama.cpp's
    quantizer fails. ``threads=None`` uses every core.
    """
    ensure_backend()
    if quant.upper() not in QUANT_TYPES:
        raise ValueError(f"unknown quantization type {quant!r}; known types: {', '.join(QUANT_TYPES)}")
    if threads is not None and threads < 1:
        raise ValueError("threads must be >= 1 (or None for every core)")
    _core.quantize(os.fspath(src), os.fspath(dst), quant, threads or 0, allow_requantize)
    return Path(dst)
