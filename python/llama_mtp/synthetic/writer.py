"""Writing a synthetic model as GGUF: converter-identical metadata, tensor data streamed in
row chunks (never the whole model in memory)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .behaviour import Behaviour
from .chat_template import CHAT_TEMPLATE
from .presets import Shape
from .quantblocks import BLOCK_SIZE, encode, noise_blocks, row_bytes
from .tokenizer import QwenVocab
from .weights import (OUTPUT, Codes, TensorSpec, generate_rows, is_structured, noise_std,
                      output_signal_rows, tensor_specs)

__all__ = ["ARCH", "SPEC_KEY", "write_model", "model_metadata", "tensor_nbytes"]

ARCH = "qwen35"
"""The dense architecture; a mixture-of-experts shape writes ``qwen35moe`` (``Shape.arch``)."""
SPEC_KEY = "llama_mtp.synthetic"
"""The one key a converter would not write: a JSON description of the synthetic model
(builder version, preset, behaviour script, MTP disagreement set), read back by
:func:`llama_mtp.synthetic.read_behaviour`."""


def model_metadata(shape: Shape, vocab: QwenVocab, *, name: str, file_type: int,
                   spec: dict[str, Any] | None) -> list[tuple[str, Any, str]]:
    """``(key, value, gguf type)`` in the order the converter writes them."""
    a = shape.arch
    kv: list[tuple[str, Any, str]] = [
        ("general.type", "model", "str"),
        ("general.name", name, "str"),
        ("general.size_label", shape.size_label, "str"),
        (f"{a}.block_count", shape.block_count, "u32"),
        (f"{a}.context_length", shape.context_length, "u32"),
        (f"{a}.embedding_length", shape.n_embd, "u32"),
    ]
    if not shape.is_moe:  # the MoE config has no intermediate_size
        kv.append((f"{a}.feed_forward_length", shape.n_ff, "u32"))
    kv += [
        (f"{a}.attention.head_count", shape.n_head, "u32"),
        (f"{a}.attention.head_count_kv", shape.n_head_kv, "u32"),
        (f"{a}.rope.dimension_sections", shape.rope_sections, "arr"),
        (f"{a}.rope.freq_base", shape.rope_theta, "f32"),
        (f"{a}.attention.layer_norm_rms_epsilon", shape.rms_norm_eps, "f32"),
    ]
    if shape.is_moe:
        kv += [(f"{a}.expert_count", shape.n_expert, "u32"),
               (f"{a}.expert_used_count", shape.n_expert_used, "u32")]
    kv += [
        (f"{a}.attention.key_length", shape.head_dim, "u32"),
        (f"{a}.attention.value_length", shape.head_dim, "u32"),
        ("general.file_type", file_type, "u32"),
    ]
    if shape.is_moe:
        kv += [(f"{a}.expert_feed_forward_length", shape.n_ff_exp, "u32"),
               (f"{a}.expert_shared_feed_forward_length", shape.n_ff_shexp, "u32")]
    if shape.n_mtp:
        kv.append((f"{a}.nextn_predict_layers", shape.n_mtp, "u32"))
    kv += [
        (f"{a}.ssm.conv_kernel", shape.conv_kernel, "u32"),
        (f"{a}.ssm.state_size", shape.linear_head_dim, "u32"),
        (f"{a}.ssm.group_count", shape.linear_n_k_heads, "u32"),
        (f"{a}.ssm.time_step_rank", shape.linear_n_v_heads, "u32"),
        (f"{a}.ssm.inner_size", shape.ssm_inner, "u32"),
        (f"{a}.attention.recurrent_layers",
         [shape.is_recurrent(i) for i in range(shape.block_count)], "arr"),
        (f"{a}.full_attention_interval", shape.full_attention_interval, "u32"),
        (f"{a}.rope.dimension_count", shape.n_rot, "u32"),
        ("general.quantization_version", 2, "u32"),
        ("tokenizer.ggml.model", "gpt2", "str"),
        ("tokenizer.ggml.pre", "qwen35", "str"),
        ("tokenizer.ggml.tokens", vocab.tokens, "arr"),
        ("tokenizer.ggml.token_type", vocab.token_types, "arr"),
        ("tokenizer.ggml.merges", vocab.merges, "arr"),
        ("tokenizer.ggml.eos_token_id", vocab.eos_id, "u32"),
        ("tokenizer.ggml.padding_token_id", vocab.pad_id, "u32"),
        ("tokenizer.ggml.bos_token_id", vocab.pad_id, "u32"),
        ("tokenizer.ggml.add_bos_token", False, "bool"),
        ("tokenizer.chat_template", CHAT_TEMPLATE, "str"),
    ]
    if spec is not None:
        kv.append((SPEC_KEY, json.dumps(spec, sort_keys=True, separators=(",", ":")), "str"))
    return kv


def _add_kv(writer: Any, key: str, value: Any, kind: str) -> None:
    if kind == "str":
        writer.add_string(key, value)
    elif kind == "u32":
        writer.add_uint32(key, int(value))
    elif kind == "f32":
        writer.add_float32(key, float(value))
    elif kind == "bool":
        writer.add_bool(key, bool(value))
    else:
        writer.add_array(key, value)


def tensor_nbytes(spec: TensorSpec, qtype: str) -> int:
    """Bytes of a tensor stored as ``qtype``."""
    return spec.n_rows * row_bytes(qtype, spec.row_len)


def write_model(path: str | os.PathLike[str], shape: Shape, vocab: QwenVocab,
                behaviour: Behaviour, *, types: Callable[[TensorSpec], str], file_type: int,
                seed: int, name: str, spec: dict[str, Any] | None,
                direct_noise: bool = False, progress: bool | None = None) -> Path:
    """Write the model to ``path`` (through a temporary file, renamed at the end).

    ``types`` gives each tensor's ggml type (``"F32"``, ``"F16"``, ``"Q8_0"``, ``"Q4_K"``,
    ``"Q5_K"``, ``"Q6_K"``). With ``direct_noise`` the tensors that only hold noise are written
    as random codes (fast) instead of quantized random floats.
    """
    import gguf
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    if shape.vocab_size != vocab.size:
        raise ValueError(f"shape.vocab_size={shape.vocab_size} but the vocabulary has {vocab.size}")
    shape.validate()
    specs = tensor_specs(shape)
    codes = Codes(shape.n_embd, behaviour.n, seed)
    plan = [(s, "F32" if s.keep_f32 else types(s)) for s in specs]
    total = sum(tensor_nbytes(s, t) for s, t in plan)

    out = Path(path)
    tmp = out.with_name(out.name + f".partial{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), shape.arch)
    for key, value, kind in model_metadata(shape, vocab, name=name, file_type=file_type,
                                           spec=spec):
        _add_kv(writer, key, value, kind)
    for s, t in plan:
        writer.add_tensor_info(s.name, tuple(reversed(s.shape)), np.dtype(np.float32),
                               tensor_nbytes(s, t), raw_dtype=gguf.GGMLQuantizationType[t])
    show = progress if progress is not None else total > (512 << 20)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        fout = writer.fout[0]
        align = writer.data_alignment
        with tqdm(total=total, unit="B", unit_scale=True, disable=not show,
                  desc=f"writing {out.name}") as bar:
            for s, t in plan:
                fout.write(b"\0" * (-fout.tell() % align))
                written = 0
                if direct_noise and t in BLOCK_SIZE and (not is_structured(s)
                                                          or s.role == OUTPUT):
                    # noise as random codes; the output's few signal rows encoded on top
                    signal = (output_signal_rows(s, behaviour, codes, seed)
                              if s.role == OUTPUT else {})
                    rng = np.random.default_rng([seed, 0x5EED, len(s.name), *s.name.encode()])
                    rb = row_bytes(t, s.row_len)
                    rows_per = max(1, (64 << 20) // max(1, rb))
                    for start in range(0, s.n_rows, rows_per):
                        k = min(rows_per, s.n_rows - start)
                        data = noise_blocks(rng, k * s.row_len, t, noise_std(s, shape))
                        hits = [r for r in signal if start <= r < start + k]
                        if hits:
                            buf = bytearray(data)
                            for r in hits:
                                off = (r - start) * rb
                                buf[off:off + rb] = encode(signal[r][None, :], t)
                            data = bytes(buf)
                        fout.write(data)
                        written += len(data)
                        bar.update(len(data))
                else:
                    for _, rows in generate_rows(s, shape, behaviour, codes, seed):
                        data = encode(rows, t)
                        fout.write(data)
                        written += len(data)
                        bar.update(len(data))
                if written != tensor_nbytes(s, t):
                    raise AssertionError(f"{s.name}: wrote {written} bytes, expected "
                                         f"{tensor_nbytes(s, t)}")
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out
