"""Generation for the synthetic-model tests, in one place.

Uses the Python API (``Model.generate`` with ``Speculator.mtp``) when this build has it, else
(TEMPORARY, clearly a stop-gap) llama.cpp's reference binaries via ``tests/_reference_tools.py``.
Everything runs on the CPU with one thread (see the field notes on thread contention).
"""

from __future__ import annotations

import atexit
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llama_mtp import Model

_MODELS: dict[tuple[str, int], Model] = {}


def _model(path: Path, n_ctx: int) -> Model:
    """A loaded model, kept for the whole session (loading costs more than a short run)."""
    key = (str(path), n_ctx)
    if key not in _MODELS:
        _MODELS[key] = Model(path, n_gpu_layers=0, n_threads=1, n_threads_batch=1, n_ctx=n_ctx)
    return _MODELS[key]


@atexit.register
def _close_all() -> None:
    for m in _MODELS.values():
        m.close()
    _MODELS.clear()


@dataclass
class Run:
    tokens: list[int]
    drafted: int = 0
    accepted: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def _has_api() -> bool:
    try:
        from llama_mtp.sampling import SamplingParams  # noqa: F401
        from llama_mtp.speculator import Speculator  # noqa: F401
    except ImportError:
        return False
    return hasattr(Model, "generate")


def generate(path: Path, prompt: list[int], n: int, n_max: int = 0, *,
             ignore_eos: bool = True) -> Run:
    """Greedy generation of ``n`` tokens after ``prompt``; ``n_max > 0`` drafts with MTP."""
    ctx = 4096 if len(prompt) + n + 64 <= 4096 else 16384
    if _has_api():
        from llama_mtp.sampling import SamplingParams
        from llama_mtp.speculator import Speculator
        model = _model(path, ctx)
        sampling = SamplingParams(temperature=0.0, top_k=1, max_tokens=n, ignore_eos=ignore_eos)
        spec = Speculator.mtp(n_max=n_max) if n_max > 0 else None
        out = model.generate(list(prompt), sampling, speculator=spec, cache_prompt=False)
        return Run(list(out.tokens), out.stats.draft_n, out.stats.draft_n_accepted)
    from . import _reference_tools as rt  # TEMPORARY fallback
    with Model(path, vocab_only=True) as vocab:
        text = vocab.detokenize(list(prompt))
        tmp = Path(tempfile.mkdtemp())
        if n_max > 0:
            r = rt.speculative(path, text, n, n_max, tmp, ctx=ctx)
            return Run(vocab.tokenize(r.text, parse_special=True)[:n], r.n_drafted, r.n_accept)
        return Run(vocab.tokenize(rt.greedy_text(path, text, n, tmp, ctx=ctx),
                                  parse_special=True)[:n])
