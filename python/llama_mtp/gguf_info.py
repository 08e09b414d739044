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
from typing import Any, Union

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
