"""Reading a GGUF file's header, metadata and tensor table without loading weights.

This is the card's "loadability check": :func:`inspect_gguf` validates the file (magic,
version, counts, every tensor's bytes inside the file) and summarises what a user wants to
know before spending minutes loading it: architecture, size, quantization mix, context length,
and whether an MTP head is present and complete; :meth:`GGUFReport.check_loadable` then lets
llama.cpp check the architecture and every tensor's shape without loading weights.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Union

from . import _core
from .errors import LlamaMTPError
from .system import ensure_backend

MetadataValue = Union[bool, int, float, str, list[bool], list[int], list[float], list[str]]

# Tensors every MTP (nextn) block carries in a converter-made Qwen3.5/3.6 GGUF.
MTP_BLOCK_TENSORS: tuple[str, ...] = ("nextn.eh_proj", "nextn.enorm", "nextn.hnorm",
                                      "nextn.shared_head_norm")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file (shape in ggml order: contiguous dimension first)."""

    name: str
    type: str
    shape: list[int]
    offset: int
    n_bytes: int
    n_elements: int
    part: int = 0
    """Index in :attr:`GGUFReport.parts` of the file holding it (split models)."""


@dataclass(frozen=True)
class MTPStatus:
    """Whether a GGUF carries a usable MTP head."""

    declared_layers: int
    """``<arch>.nextn_predict_layers`` (0 when absent)."""
    mtp_blocks: list[int]
    """Block indices that hold ``nextn.*`` tensors."""
    missing_tensors: list[str]
    """Expected ``blk.N.nextn.*`` tensors that are not in the file."""

    @property
    def present(self) -> bool:
        """The file declares or carries an MTP head."""
        return self.declared_layers > 0 or bool(self.mtp_blocks)

    @property
    def complete(self) -> bool:
        """Metadata and tensors agree: MTP can be used."""
        return self.declared_layers > 0 and bool(self.mtp_blocks) and not self.missing_tensors

    @property
    def problem(self) -> str | None:
        """Why MTP cannot be used, or ``None`` when it can (or is simply absent)."""
        if not self.present or self.complete:
            return None
        if self.declared_layers == 0:
            return ("the file has blk.N.nextn.* tensors but no '<arch>.nextn_predict_layers' key: "
                    "it was written by an older converter; re-convert with a current "
                    "convert_hf_to_gguf.py")
        if not self.mtp_blocks:
            return (f"'<arch>.nextn_predict_layers' = {self.declared_layers} but the file has no "
                    "blk.N.nextn.* tensors: the MTP weights were dropped during conversion; "
                    "re-convert from a checkpoint that has the mtp.* weights")
        return "MTP tensors missing: " + ", ".join(self.missing_tensors)


def weights_per_token(tensors: Iterable[tuple[str, int]], n_layer: int, n_expert: int = 0,
                      n_expert_used: int = 0) -> dict[str, int]:
    """The weights one token reads in the main model, by part, from ``(name, n_elements)``
    pairs: ``"attention"`` (attention and DeltaNet layers, norms), ``"dense_ffn"``,
    ``"routed_experts"`` (``n_expert_used`` of ``n_expert`` experts' share of every
    ``*_exps`` tensor), ``"shared_expert"``, ``"router"``, ``"output"``. Blocks ``>= n_layer``
    (the MTP head) and the token embedding (a row lookup) are left out."""
    parts = dict.fromkeys(("attention", "dense_ffn", "routed_experts", "shared_expert", "router",
                           "output"), 0)
    for name, n in tensors:
        fields = name.split(".")
        if name.startswith("blk.") and fields[1].isdigit() and int(fields[1]) >= n_layer:
            continue
        if name == "token_embd.weight":
            continue
        if name.startswith("output"):
            parts["output"] += n
        elif "_exps." in name:
            parts["routed_experts"] += n * n_expert_used // max(1, n_expert)
        elif "_shexp." in name:
            parts["shared_expert"] += n
        elif ".ffn_gate_inp." in name:
            parts["router"] += n
        elif ".ffn_" in name:
            parts["dense_ffn"] += n
        else:
            parts["attention"] += n
    return parts


@dataclass(frozen=True)
class MoEInfo:
    """The mixture-of-experts layout of a GGUF (``<arch>.expert_count`` > 0)."""

    expert_count: int
    """``<arch>.expert_count``: routed experts per layer."""
    expert_used_count: int
    """``<arch>.expert_used_count``: experts the router picks per token."""
    expert_feed_forward_length: int
    """Width of one routed expert (0 when the key is absent)."""
    shared_feed_forward_length: int
    """Width of the shared expert (0: none)."""
    expert_tensors: int
    """``*_exps`` tensors (three per MoE layer, or two with fused gate/up)."""
    expert_params: int
    """Weights in the routed experts (all layers, the MTP block's included)."""
    expert_quantization_mix: dict[str, int]
    """Tensor count per ggml type of the routed experts."""
    other_quantization_mix: dict[str, int]
    """Tensor count per ggml type of every other tensor."""
    per_token: dict[str, int]
    """Weights one token reads in the main model, by part (:func:`weights_per_token`)."""

    @property
    def active_params(self) -> int:
        """Weights one token reads in the main model (MTP head and embedding lookup excluded)."""
        return sum(self.per_token.values())


@dataclass(frozen=True)
class GGUFReport:
    """What :func:`inspect_gguf` found in a GGUF file."""

    path: str
    file_size: int
    version: int
    alignment: int
    data_offset: int
    metadata: dict[str, MetadataValue]
    tensors: list[TensorInfo] = field(repr=False)
    parts: list[str] = field(default_factory=list)
    """Every file of the model: ``[path]``, or all parts of a split model (gguf-split's
    ``-00001-of-0000N.gguf`` ...), whose tensors are all in :attr:`tensors`. ``file_size`` is
    their total."""

    @property
    def arch(self) -> str:
        """``general.architecture`` (empty when missing)."""
        value = self.metadata.get("general.architecture", "")
        return value if isinstance(value, str) else ""

    def arch_key(self, name: str) -> MetadataValue | None:
        """The value of ``<arch>.<name>``, or ``None``."""
        return self.metadata.get(f"{self.arch}.{name}")

    @property
    def n_params(self) -> int:
        """Number of weights in all tensors."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def context_length(self) -> int:
        """``<arch>.context_length`` (0 when missing)."""
        value = self.arch_key("context_length")
        return value if isinstance(value, int) else 0

    @property
    def block_count(self) -> int:
        """``<arch>.block_count``, MTP blocks included (0 when missing)."""
        value = self.arch_key("block_count")
        return value if isinstance(value, int) else 0

    @property
    def quantization_mix(self) -> dict[str, int]:
        """Tensor count per ggml type, most frequent first."""
        return dict(Counter(t.type for t in self.tensors).most_common())

    @property
    def moe(self) -> MoEInfo | None:
        """The mixture-of-experts layout, or ``None`` for a dense model."""
        def key(name: str) -> int:
            value = self.arch_key(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        n_expert = key("expert_count")
        if n_expert <= 0:
            return None
        experts = [t for t in self.tensors if "_exps." in t.name]
        others = [t for t in self.tensors if "_exps." not in t.name]
        n_layer = self.block_count - key("nextn_predict_layers")
        return MoEInfo(
            expert_count=n_expert, expert_used_count=key("expert_used_count"),
            expert_feed_forward_length=key("expert_feed_forward_length"),
            shared_feed_forward_length=key("expert_shared_feed_forward_length"),
            expert_tensors=len(experts), expert_params=sum(t.n_elements for t in experts),
            expert_quantization_mix=dict(Counter(t.type for t in experts).most_common()),
            other_quantization_mix=dict(Counter(t.type for t in others).most_common()),
            per_token=weights_per_token(((t.name, t.n_elements) for t in self.tensors), n_layer,
                                        n_expert, key("expert_used_count")))

    @property
    def has_chat_template(self) -> bool:
        """The file carries ``tokenizer.chat_template``."""
        return isinstance(self.metadata.get("tokenizer.chat_template"), str)

    @property
    def mtp(self) -> MTPStatus:
        """Presence and completeness of the MTP (nextn) head."""
        declared = self.arch_key("nextn_predict_layers")
        n_declared = declared if isinstance(declared, int) and not isinstance(declared, bool) else 0
        names = {t.name for t in self.tensors}
        blocks = sorted({int(n.split(".")[1]) for n in names
                         if n.startswith("blk.") and ".nextn." in n and n.split(".")[1].isdigit()})
        expected_blocks = list(range(self.block_count - n_declared, self.block_count)) if n_declared else blocks
        missing = [f"blk.{b}.{t}.weight" for b in expected_blocks for t in MTP_BLOCK_TENSORS
                   if f"blk.{b}.{t}.weight" not in names]
        return MTPStatus(declared_layers=n_declared, mtp_blocks=blocks, missing_tensors=missing)

    def check_loadable(self) -> list[str]:
        """Why llama.cpp would refuse this file (an empty list: it loads).

        Besides :attr:`mtp`'s problem, llama.cpp itself reads the metadata and checks every
        tensor's name and shape against the architecture, without allocating or reading weights
        (``llama_model_params.no_alloc``): seconds even for a 27B model.
        """
        ensure_backend()
        problems: list[str] = []
        mtp = self.mtp
        if mtp.problem:
            problems.append(mtp.problem)
        options = _core.ModelOptions()
        options.no_alloc = True
        options.n_gpu_layers = 0
        options.load_mtp = mtp.declared_layers > 0
        try:
            _core.Model(self.path, options).close()
        except (LlamaMTPError, FileNotFoundError) as exc:
            problems.append(str(exc))
        return problems


def report_from_native(raw: dict[str, Any]) -> GGUFReport:
    """A :class:`GGUFReport` from the dict that ``_core.read_gguf`` / ``_core.Model.gguf`` return."""
    return GGUFReport(
        path=raw["path"],
        file_size=raw["file_size"],
        version=raw["version"],
        alignment=raw["alignment"],
        data_offset=raw["data_offset"],
        metadata=dict(raw["metadata"]),
        tensors=[TensorInfo(**t) for t in raw["tensors"]],
        parts=list(raw["parts"]),
    )


def inspect_gguf(path: str | os.PathLike[str], *, max_array_items: int | None = 64) -> GGUFReport:
    """Validate and summarise a GGUF file without loading its weights (the first part of a split
    model: every part is read and checked).

    Arrays in the metadata (token lists, ...) are cut to ``max_array_items`` entries
    (``None`` keeps them whole). Raises ``FileNotFoundError`` for a missing file and
    :class:`~llama_mtp.errors.ModelLoadError` (with the reason) for a broken one.
    """
    ensure_backend()
    limit = -1 if max_array_items is None else max_array_items
    return report_from_native(_core.read_gguf(os.fspath(path), limit if limit >= 0 else 2**63 - 1))
