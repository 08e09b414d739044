"""Speculative decoding configuration: llama.cpp's ``--spec-type`` family, vLLM's ``speculative_config``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, Mapping

from . import _core
from .tensor_placement import OverrideTensor, normalize_overrides

_log = logging.getLogger("llama_mtp")

SPEC_TYPES: tuple[str, ...] = ("none", *_core.speculator_types())
"""Speculator types, named as llama.cpp names them (``--spec-type``)."""

AUTO_N_MAX = 3
"""The longest draft of ``n_max="auto"`` (the model card compares MTP2 and MTP3)."""


def _n_max(value: object) -> tuple[int, bool]:
    """An ``n_max`` argument: a number, or ``"auto"`` (adaptive, up to AUTO_N_MAX)."""
    if value == "auto":
        return AUTO_N_MAX, True
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"n_max must be a number or 'auto', not {value!r}")
    try:
        return int(value), False
    except ValueError:
        raise ValueError(f"n_max must be a number or 'auto', not {value!r}") from None


_VLLM_METHODS = {"mtp": "draft-mtp", "qwen3_next_mtp": "draft-mtp", "draft_model": "draft-simple",
                 "ngram": "ngram-simple"}


@dataclass(frozen=True)
class Speculator:
    """Which speculator drafts tokens for the target model to verify.

    Use the constructors: :meth:`mtp` (``--spec-type draft-mtp``), :meth:`none` (plain decoding),
    :meth:`draft_model` (``draft-simple``), :meth:`ngram`, or :meth:`from_config` for a vLLM-style
    ``{"method": "mtp", "num_speculative_tokens": k}`` dict. Output is identical with and without
    a speculator under greedy sampling: drafts are verified by the target.
    """

    type: str = "none"
    n_max: int = 3
    """``--spec-draft-n-max``: tokens drafted per step."""
    n_min: int = 0
    """``--spec-draft-n-min``: shorter drafts are dropped."""
    p_min: float = 0.0
    """``--spec-draft-p-min``: stop drafting below this draft probability."""
    gpu_layers: int = -1
    """``--spec-draft-ngl``: layers of a separate draft model on the GPU."""
    devices: tuple[str, ...] = ()
    """``--spec-draft-device``: where a separate draft model (or MTP sidecar) goes: device names
    (``"CUDA1"``, ``"RPC0"``) or an RPC server's ``"host:port"``; ``("none",)`` keeps it on the
    CPU; empty: the target model's devices and split (llama-server's default). The MTP head
    inside the model file always runs where the model put its last block."""
    model_path: str | None = None
    """draft-simple: the draft GGUF; draft-mtp: an MTP sidecar GGUF (``mtp-*.gguf``), if any."""
    cache_type_k: str = "f16"
    """``-ctkd``: K cache type of a separate draft model's context."""
    cache_type_v: str = "f16"
    """``-ctvd``: V cache type of a separate draft model's context."""
    override_tensor: tuple[tuple[str, str], ...] = ()
    """``-otd PATTERN=BUFFER``: buffer types of a separately loaded draft model's (or MTP
    sidecar's) weights; see :mod:`llama_mtp.tensor_placement`. Any spelling ``Model`` accepts
    is stored as a tuple of pairs."""
    cpu_moe: bool = False
    """``--cpu-moe-draft``: the separate draft model's routed experts stay in CPU memory."""
    n_cpu_moe: int = 0
    """``--n-cpu-moe-draft N``: those of its blocks 0 .. N-1."""
    ngram_size_n: int = 12
    ngram_size_m: int = 48
    ngram_min_hits: int = 1
    adaptive: bool = False
    """``n_max="auto"``: before every draft the engine picks the draft length (0 to ``n_max``)
    that maximises expected tokens per second, from the measured cost of a step and the recent
    acceptance of each draft position; 0 is plain decoding, so speculation never costs much."""

    def __post_init__(self) -> None:
        if isinstance(self.devices, str) or not all(isinstance(d, str) and d for d in self.devices):
            raise ValueError("devices is a sequence of device names, e.g. ('CUDA1',)")
        object.__setattr__(self, "devices", tuple(self.devices))
        object.__setattr__(self, "override_tensor", normalize_overrides(self.override_tensor))
        # The native core holds the rules (and checks again when a request is submitted).
        _core.validate_speculator(self.to_native())
        if self.places_draft and self.model_path is None and self.enabled:
            _log.warning("draft placement options (-otd, --cpu-moe-draft, --n-cpu-moe-draft) apply to a "
                         "separately loaded draft model; this %s has none, so they have no effect (the MTP "
                         "head inside the model file is placed by the model's own override_tensor / "
                         "cpu_moe / n_cpu_moe)", self.type)

    @classmethod
    def none(cls) -> Speculator:
        """Plain decoding (the baseline)."""
        return cls("none")

    @classmethod
    def mtp(cls, n_max: int | Literal["auto"] = 2, n_min: int = 0, p_min: float = 0.0, gpu_layers: int = -1,
            sidecar: str | os.PathLike[str] | None = None, devices: Sequence[str] = (), *,
            override_tensor: OverrideTensor = None, cpu_moe: bool = False, n_cpu_moe: int = 0) -> Speculator:
        """The model's own MTP head drafts ``n_max`` tokens per step (``--spec-type draft-mtp``).

        ``n_max="auto"``: adaptive draft length, up to :data:`AUTO_N_MAX` (see :attr:`adaptive`).
        ``sidecar``: the MTP head as a separate GGUF (``mtp-*.gguf``), when a release ships it
        apart; ``gpu_layers``, ``devices``, ``override_tensor``, ``cpu_moe`` and ``n_cpu_moe``
        place it (``--spec-draft-ngl``, ``-devd``, ``-otd``, ``--cpu-moe-draft``,
        ``--n-cpu-moe-draft``). Without a sidecar the head is part of the model, placed by the
        model's own options.
        """
        limit, adaptive = _n_max(n_max)
        return cls("draft-mtp", n_max=limit, n_min=n_min, p_min=p_min, gpu_layers=gpu_layers,
                   model_path=None if sidecar is None else os.fspath(sidecar), adaptive=adaptive,
                   devices=tuple(devices), override_tensor=normalize_overrides(override_tensor),
                   cpu_moe=cpu_moe, n_cpu_moe=n_cpu_moe)

    @classmethod
    def auto(cls, n_max: int = 3) -> Speculator:
        """MTP with an adaptive draft length of at most ``n_max`` (``--spec-draft-n-max auto``)."""
        return cls("draft-mtp", n_max=n_max, adaptive=True)

    @classmethod
    def draft_model(cls, path: str | os.PathLike[str], n_max: int | Literal["auto"] = 3, n_min: int = 0,
                    p_min: float = 0.0, gpu_layers: int = -1, devices: Sequence[str] = (), *,
                    override_tensor: OverrideTensor = None, cpu_moe: bool = False,
                    n_cpu_moe: int = 0) -> Speculator:
        """A smaller model with the same vocabulary drafts (``--spec-type draft-simple -md PATH``),
        placed by ``gpu_layers``, ``devices``, ``override_tensor``, ``cpu_moe`` and ``n_cpu_moe``
        (``--spec-draft-ngl``, ``-devd``, ``-otd``, ``--cpu-moe-draft``, ``--n-cpu-moe-draft``)."""
        limit, adaptive = _n_max(n_max)
        return cls("draft-simple", n_max=limit, n_min=n_min, p_min=p_min, gpu_layers=gpu_layers,
                   model_path=os.fspath(path), adaptive=adaptive, devices=tuple(devices),
                   override_tensor=normalize_overrides(override_tensor), cpu_moe=cpu_moe, n_cpu_moe=n_cpu_moe)

    @classmethod
    def ngram(cls, kind: str = "ngram-simple", n_max: int = 8, size_n: int = 12, size_m: int = 48,
              min_hits: int = 1) -> Speculator:
        """Drafts from n-grams already seen in the prompt and output (no draft model)."""
        if not kind.startswith("ngram-"):
            raise ValueError(f"not an n-gram speculator type: {kind!r}")
        return cls(kind, n_max=n_max, ngram_size_n=size_n, ngram_size_m=size_m, ngram_min_hits=min_hits)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Speculator:
        """From vLLM's ``speculative_config``: ``{"method": "mtp", "num_speculative_tokens": 2}``.

        llama.cpp spellings are accepted too: ``{"spec_type": "draft-mtp", "n_max": 2}``.
        """
        method = config.get("method", config.get("spec_type", config.get("type", "none")))
        kind = _VLLM_METHODS.get(str(method), str(method))
        n_max, adaptive = _n_max(config.get("num_speculative_tokens", config.get("n_max", 3)))
        adaptive = adaptive or bool(config.get("adaptive", False))
        path = config.get("model", config.get("model_path"))
        known = {"method", "spec_type", "type", "num_speculative_tokens", "n_max", "model", "model_path",
                 "n_min", "p_min", "gpu_layers", "adaptive"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unsupported speculative_config keys: {sorted(unknown)}")
        return cls(kind, n_max=n_max, n_min=int(config.get("n_min", 0)),
                   p_min=float(config.get("p_min", 0.0)), gpu_layers=int(config.get("gpu_layers", -1)),
                   model_path=None if path is None else str(path), adaptive=adaptive)

    @classmethod
    def coerce(cls, value: Speculator | Mapping[str, Any] | None) -> Speculator:
        """Accept a Speculator, a vLLM-style dict, or ``None`` (plain decoding)."""
        if value is None:
            return cls.none()
        if isinstance(value, Speculator):
            return value
        if isinstance(value, Mapping):
            return cls.from_config(value)
        raise TypeError(f"speculator must be a Speculator or a dict, not {type(value).__name__}")

    @property
    def enabled(self) -> bool:
        """True unless this is plain decoding."""
        return self.type != "none"

    @property
    def places_draft(self) -> bool:
        """Any draft placement option (``-otd``, ``--cpu-moe-draft``, ``--n-cpu-moe-draft``) set."""
        return bool(self.override_tensor) or self.cpu_moe or self.n_cpu_moe != 0

    def to_native(self) -> _core.SpeculatorOptions:
        """The extension's options object (fields of the same names; no model path is "")."""
        o = _core.SpeculatorOptions()
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(o, f.name, "" if value is None else list(value) if isinstance(value, tuple) else value)
        return o
