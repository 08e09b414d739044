"""``build()``: preset + behaviour + quantization -> a GGUF file on disk."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .behaviour import Behaviour, make_behaviour, script_ranks
from .presets import Shape, get_preset
from .quantblocks import DIRECT_TYPES
from .tokenizer import QwenVocab, cache_dir, load_vocab
from .weights import TensorSpec, tensor_specs
from .writer import SPEC_KEY, write_model

__all__ = ["BUILDER_VERSION", "build", "read_behaviour", "quant_plan", "file_type_of"]

BUILDER_VERSION = 2
"""Bumped whenever the bytes a given set of arguments produces change (2: the recorded shape
gained the mixture-of-experts fields; a dense model's tensors are unchanged)."""

_PLAIN = {"F32": 0, "F16": 1, "Q8_0": 7}


def file_type_of(quant: str) -> int:
    """``general.file_type`` (llama_ftype) of a quantization name such as ``"Q4_K_M"``."""
    import gguf
    q = quant.upper()
    if q in _PLAIN:
        return _PLAIN[q]
    try:
        return int(gguf.LlamaFileType[f"MOSTLY_{q}"])
    except KeyError:
        raise ValueError(f"unknown quantization {quant!r}") from None


def _probe_experts(n_expert: int) -> int:
    """Experts of the probe model: llama.cpp's quantizer only asks whether a model has experts,
    4 or more, or exactly 8 (Mixtral's rules), so a probe with that answer picks the same types
    (a 256-expert probe would be a 3 GB file)."""
    return n_expert if n_expert <= 4 or n_expert == 8 else 4


def _probe_shape(shape: Shape) -> Shape:
    """Same layer layout and head ratios as ``shape``, every dimension 256, tiny vocabulary
    (and, with experts, as many as the quantizer's rules tell apart)."""
    probe = shape.with_(name="probe", n_embd=256, n_head=shape.n_head // shape.n_head_kv,
                        n_head_kv=1, head_dim=256, linear_n_k_heads=1,
                        linear_n_v_heads=shape.linear_n_v_heads // shape.linear_n_k_heads,
                        linear_head_dim=256, vocab_size=1024, context_length=4096,
                        partial_rotary_factor=0.25)
    if not shape.is_moe:
        return probe.with_(n_ff=256)
    x = _probe_experts(shape.n_expert)
    return probe.with_(n_expert=x, n_expert_used=min(shape.n_expert_used, x), n_ff_exp=256,
                       n_ff_shexp=256)


def quant_plan(shape: Shape, quant: str, *, threads: int | None = None) -> dict[str, str]:
    """ggml type of every tensor when llama.cpp quantizes a model of this layout to ``quant``.

    Found by quantizing a small probe model with the same tensor names, layer layout and
    head ratios (every matrix dimension 256, like the real ones a multiple of 256) with
    llama.cpp's own quantizer, so it follows the vendored llama.cpp's rules. Cached on disk.
    """
    from ..gguf_info import inspect_gguf
    from ..quant import quantize
    from ..system import system_info

    q = quant.upper()
    if q in _PLAIN:
        return {s.name: ("F32" if s.keep_f32 else q) for s in tensor_specs(shape)}
    moe = f"-x{_probe_experts(shape.n_expert)}" if shape.is_moe else ""
    key = (f"{q}-L{shape.n_layer}-m{shape.n_mtp}-i{shape.full_attention_interval}"
           f"-g{shape.n_head // shape.n_head_kv}-v{shape.linear_n_v_heads // shape.linear_n_k_heads}"
           f"{moe}-{system_info().llama_commit[:12]}")
    path = cache_dir() / "quant-plans" / f"{key}.json"
    if path.exists():
        plan: dict[str, str] = json.loads(path.read_text())
        return plan
    probe = _probe_shape(shape)
    vocab = load_vocab(probe.vocab_size)       # lowest ranks only: the probe has no script
    behaviour = Behaviour(kind="probe", script=(0, 1, 2), mtp_agreement=1.0, wrong=frozenset(),
                          eog=frozenset({vocab.eos_id}), has_mtp=bool(shape.n_mtp))
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(f".src{os.getpid()}.gguf")
    dst = path.with_suffix(f".dst{os.getpid()}.gguf")
    try:
        write_model(src, probe, vocab, behaviour, types=lambda s: "F16", file_type=1, seed=0,
                    name="probe", spec=None, progress=False)
        quantize(src, dst, q, threads=threads)
        report = inspect_gguf(dst, max_array_items=0)
        plan = {t.name: t.type.upper() for t in report.tensors}
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(plan, indent=0, sort_keys=True))
    os.replace(tmp, path)
    return plan


def vocab_for(vocab_size: int) -> QwenVocab:
    """The tokenizer of a model with ``vocab_size`` tokens (a truncated one keeps the tokens of
    the built-in behaviour scripts)."""
    from .tokenizer import FULL_VOCAB_SIZE
    if vocab_size == FULL_VOCAB_SIZE:
        return load_vocab(vocab_size)
    return load_vocab(vocab_size, script_ranks())


def _spec(shape: Shape, behaviour: Behaviour, preset: str, quant: str, seed: int,
          method: str) -> dict[str, Any]:
    return {"builder_version": BUILDER_VERSION, "preset": preset, "quant": quant, "seed": seed,
            "method": method, "behaviour": behaviour.kind, "script": list(behaviour.script),
            "mtp_agreement": behaviour.mtp_agreement, "mtp_wrong": sorted(behaviour.wrong),
            "eog": sorted(behaviour.eog), "has_mtp": behaviour.has_mtp, "shape": asdict(shape)}


def read_behaviour(path: str | os.PathLike[str]) -> Behaviour:
    """The :class:`Behaviour` recorded in a file written by :func:`build`."""
    from ..gguf_info import inspect_gguf
    meta = inspect_gguf(path, max_array_items=0).metadata
    raw = meta.get(SPEC_KEY)
    if not isinstance(raw, str):
        raise ValueError(f"{os.fspath(path)} was not written by llama_mtp.synthetic "
                         f"(no {SPEC_KEY!r} key)")
    spec = json.loads(raw)
    return Behaviour(kind=spec["behaviour"], script=tuple(spec["script"]),
                     mtp_agreement=float(spec["mtp_agreement"]),
                     wrong=frozenset(spec["mtp_wrong"]), eog=frozenset(spec["eog"]),
                     has_mtp=bool(spec["has_mtp"]))


def build(path: str | os.PathLike[str], preset: str | Shape = "tiny", quant: str = "Q4_K_M",
          mtp_agreement: float = 0.8, seed: int = 0, *, behaviour: str = "text",
          mtp: bool = True, vocab_size: int | None = None, method: str = "auto",
          threads: int | None = None, progress: bool | None = None,
          overwrite: bool = True) -> Path:
    """Write a synthetic Qwen3.6-style GGUF model (``qwen35``, or ``qwen35moe`` for the
    mixture-of-experts presets) to ``path`` and return it.

    Args:
        path: output file.
        preset: ``"tiny"`` (tests; ~0.14 B weights, almost all in the 248k-token embedding and
            output), ``"bench"`` (CPU benchmark, ~1.6 B weights, 32k vocabulary, ~1 GB at
            Q4_K_M), ``"qwen3.6-27b"`` (the real Qwen3.6-27B dimensions, ~16 GB at Q4_K_M);
            mixture of experts: ``"tiny-moe"`` (tests), ``"bench-moe"`` (CPU benchmark, 256
            experts, ~0.4 B of ~5.3 B weights active per token), ``"qwen3.6-35b-a3b"`` (the
            real Qwen3.6-35B-A3B dimensions); or a :class:`~llama_mtp.synthetic.Shape`.
        quant: ``"F32"``, ``"F16"``, ``"Q8_0"`` or any llama.cpp quantization
            (``"Q4_K_M"``, ``"Q6_K"``, ``"Q2_K"`` ...).
        mtp_agreement: fraction of greedy MTP drafts (``n_max=1``) the main model accepts.
        seed: seeds every random value; same arguments give the same bytes.
        behaviour: ``"text"`` (a cycle through an 81-token passage), ``"chat"`` (reasoning,
            ``</think>``, an answer and ``<|im_end|>`` after an assistant opener) or
            ``"varying"`` (a 160-token cycle whose MTP agreement alternates between 1 and 0 in
            spans of 40 tokens; ``mtp_agreement`` is then unused).
        mtp: ``False`` writes no MTP block and no ``nextn_predict_layers`` key.
        vocab_size: override the preset's vocabulary size (248,320 = the real tokenizer;
            smaller keeps the lowest BPE ranks, see :func:`~.tokenizer.load_vocab`).
        method: how quantized types are written: ``"direct"`` (blocks written by numpy, noise
            tensors as random codes; needs a plan of F32/F16/Q8_0/Q4_K/Q5_K/Q6_K, e.g. Q4_K_M,
            Q5_K_M, Q6_K), ``"requantize"`` (write F16, then llama.cpp's quantizer), or
            ``"auto"`` (direct when possible).
        threads: threads for llama.cpp's quantizer (``None``: all cores).
        progress: show a tqdm bar (default: for files over 512 MB).
        overwrite: ``False`` returns an existing ``path`` untouched.
    """
    out = Path(path)
    if out.exists() and not overwrite:
        return out
    shape = get_preset(preset) if isinstance(preset, str) else preset
    preset_name = preset if isinstance(preset, str) else shape.name
    if vocab_size is not None:
        shape = shape.with_(vocab_size=int(vocab_size))
    if not mtp:
        shape = shape.with_(n_mtp=0)
    shape.validate()
    q = quant.upper()
    file_type = file_type_of(q)
    vocab = vocab_for(shape.vocab_size)
    beh = make_behaviour(behaviour, vocab, mtp_agreement, seed=seed, has_mtp=bool(shape.n_mtp))
    name = f"Synthetic Qwen3.6 {preset_name}"
    out.parent.mkdir(parents=True, exist_ok=True)

    if q in _PLAIN:
        chosen = "direct"
        plan = quant_plan(shape, q)
    else:
        plan = quant_plan(shape, q, threads=threads) if method in ("auto", "direct") else {}
        direct_ok = bool(plan) and set(plan.values()) <= (DIRECT_TYPES | {"F32", "F16"})
        if method == "direct" and not direct_ok:
            raise ValueError(f"{q} uses types {sorted(set(plan.values()))}; direct writing "
                             f"supports {sorted(DIRECT_TYPES)}: use method='requantize'")
        if method not in ("auto", "direct", "requantize"):
            raise ValueError("method must be 'auto', 'direct' or 'requantize'")
        chosen = "direct" if direct_ok and method != "requantize" else "requantize"

    spec = _spec(shape, beh, preset_name, q, seed, chosen)
    if chosen == "direct":
        def types(s: TensorSpec) -> str:
            return plan[s.name]
        return write_model(out, shape, vocab, beh, types=types, file_type=file_type, seed=seed,
                           name=name, spec=spec, direct_noise=q not in _PLAIN,
                           progress=progress)

    from ..quant import quantize
    src = out.with_name(out.name + f".f16-{os.getpid()}")
    try:
        write_model(src, shape, vocab, beh, types=lambda s: "F16", file_type=1, seed=seed,
                    name=name, spec=spec, progress=progress)
        quantize(src, out, q, threads=threads)
    finally:
        src.unlink(missing_ok=True)
    return out
