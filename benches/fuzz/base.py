"""The unmutated models the fuzzer starts from: small but complete synthetic models.

Each base is a full ``qwen35`` model from :mod:`llama_mtp.synthetic` (DeltaNet and attention
layers, MTP head, tokenizer, chat template) with the vocabulary cut to a few thousand tokens so
that a load takes milliseconds instead of the full 248k-token vocabulary's second. The same
arguments give the same bytes, so a seed reproduces its mutant on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["BASES", "base_path"]

BASES: dict[str, dict[str, Any]] = {
    # the tiny preset's shape (4 layers: 3 DeltaNet + 1 attention, + 1 MTP block), Q8_0
    "qwen35": {"preset": "tiny", "quant": "Q8_0", "vocab_size": 4096, "mtp_agreement": 0.8},
    # the same with llama.cpp's Q4_K_M type mix (Q4_K / Q6_K blocks, f32 vectors)
    "qwen35-q4km": {"preset": "tiny", "quant": "Q4_K_M", "vocab_size": 4096,
                    "mtp_agreement": 0.8},
    # mixture of experts (qwen35moe): 16 experts, 4 per token, a shared expert, MTP head
    "qwen35moe": {"preset": "tiny-moe", "quant": "Q8_0", "vocab_size": 4096, "mtp_agreement": 0.8},
}


def _fingerprint(args: dict[str, Any]) -> str:
    import llama_mtp.synthetic as synthetic
    h = hashlib.sha256(json.dumps(args, sort_keys=True).encode())
    for f in sorted(Path(synthetic.__file__).parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def base_path(name: str, cache_dir: Path) -> Path:
    """The file of base ``name`` in ``cache_dir`` (built on first use)."""
    from llama_mtp.synthetic import build
    if name not in BASES:
        raise ValueError(f"unknown base {name!r}; known: {', '.join(BASES)}")
    args = BASES[name]
    path = cache_dir / f"fuzz-{name}-{_fingerprint(args)}.gguf"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        build(tmp, progress=False, **args)
        os.replace(tmp, path)
    return path
