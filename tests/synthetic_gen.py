"""Generation for the synthetic-model tests, in one place.

Through the Python API (``Model.generate`` with ``Speculator.mtp``), on the CPU with one thread
(see the field notes on thread contention).
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from pathlib import Path

from llama_mtp import Model, SamplingParams, Speculator

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


def generate(path: Path, prompt: list[int], n: int, n_max: int = 0, *,
             ignore_eos: bool = True) -> Run:
    """Greedy generation of ``n`` tokens after ``prompt``; ``n_max > 0`` drafts with MTP."""
    ctx = 4096 if len(prompt) + n + 64 <= 4096 else 16384
    model = _model(path, ctx)
    sampling = SamplingParams(temperature=0.0, top_k=1, max_tokens=n, ignore_eos=ignore_eos)
    spec = Speculator.mtp(n_max=n_max) if n_max > 0 else None
    out = model.generate(list(prompt), sampling, speculator=spec, cache_prompt=False)
    return Run(list(out.tokens), out.stats.draft_n, out.stats.draft_n_accepted)
