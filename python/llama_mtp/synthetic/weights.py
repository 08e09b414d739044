"""The tensors of a synthetic ``qwen35`` model: names, shapes and values, row chunk by row chunk.

Names and shapes are what the vendored converter writes for the same HF config (checked by
``tests/test_synthetic_converter.py``). Values implement :mod:`.behaviour`:

* ``token_embd`` row of script token ``c_i``: the +-1 code ``u_i`` (orthogonal codes: rows of a
  Hadamard matrix tiled over the hidden size, under a random sign mask); every other token gets
  ``u_{n-1}``. Plus small noise (std 0.05).
* ``output`` row of ``c_{i+1}``: ``(20 / E) u_i``, so the successor's logit is ~20; all other
  rows are noise with logit std ~0.3.
* ``nextn.eh_proj``: its embedding half maps ``u_i`` to ``u_i`` (agree) or ``u_{i+1}``
  (disagree); its hidden half is small noise, so the head depends on its input token only.
* norms: 1 + noise; every other matrix: random with std ``1/sqrt(fan_in)`` (inputs of the
  residual stream) or small enough that each layer adds ~``residual_scale / sqrt(2 n_layer)``
  of the embedding's RMS (outputs into the residual stream).
* mixture of experts (``qwen35moe``): the router (``ffn_gate_inp``) and the shared expert's
  gate (``ffn_gate_inp_shexp``) are random with std ``1/sqrt(n_embd)``, so each token's logits
  over the experts are ~N(0, 1) and differ from token to token (its code vector differs): tokens
  spread over all experts. Every expert is a random FFN like the dense one (the ``3-D``
  ``ffn_{gate,up,down}_exps``), so compute costs what it costs; the layer's output (a convex
  mix of ``n_expert_used`` experts plus the sigmoid-gated shared expert) stays as small as a
  dense FFN's, so the behaviour holds whichever experts the router picks.

Each tensor draws from its own generator seeded by ``(seed, tensor name)``, in fixed chunks of
rows, so the bytes do not depend on the order or the machine.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
import numpy.typing as npt

from .behaviour import Behaviour
from .presets import Shape

__all__ = ["TensorSpec", "tensor_specs", "ffn_specs", "Codes", "generate_rows", "output_signal_rows",
           "CHUNK_ROWS", "KEEP_F32", "OUTPUT"]

CHUNK_ROWS = 8192
"""Rows generated per step (fixed: part of the byte-exact determinism)."""

F32 = npt.NDArray[np.float32]

SUCCESSOR_LOGIT = 20.0
EMBD_NOISE = 0.05
OUTPUT_NOISE_LOGIT = 0.3
NORM_NOISE = 0.05

# roles
EMBD, OUTPUT, NORM, IN_PROJ, OUT_PROJ, EH_PROJ, SSM_A, DT_BIAS, CONV, ROUTER = (
    "embd", "output", "norm", "in_proj", "out_proj", "eh_proj", "ssm_a", "dt_bias", "conv",
    "router")

KEEP_F32 = frozenset({NORM, SSM_A, DT_BIAS, CONV, ROUTER})
"""Roles stored as F32 whatever the file type (1-D tensors, the conv kernel and the expert gates,
as the converter and llama.cpp's quantizer keep them)."""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: ggml name, ggml shape (``ne0`` = row length first) and how to fill it."""

    name: str
    shape: tuple[int, ...]
    role: str

    @property
    def n_rows(self) -> int:
        """Rows (product of every dimension after the first)."""
        return int(np.prod(self.shape[1:])) if len(self.shape) > 1 else 1

    @property
    def row_len(self) -> int:
        """Values per row (``ne0``)."""
        return self.shape[0]

    @property
    def n_values(self) -> int:
        """Number of values."""
        return int(np.prod(self.shape))

    @property
    def keep_f32(self) -> bool:
        """Stored as F32 whatever the requested type."""
        return self.role in KEEP_F32


def ffn_specs(shape: Shape, p: str) -> list[TensorSpec]:
    """The feed-forward tensors of block ``p``: a dense SwiGLU FFN, or (mixture of experts) the
    router, the routed experts stacked along a third dimension, and the gated shared expert."""
    E = shape.n_embd
    if not shape.is_moe:
        F = shape.n_ff
        return [TensorSpec(f"{p}.ffn_gate.weight", (E, F), IN_PROJ),
                TensorSpec(f"{p}.ffn_up.weight", (E, F), IN_PROJ),
                TensorSpec(f"{p}.ffn_down.weight", (F, E), OUT_PROJ)]
    X, Fx, Fs = shape.n_expert, shape.n_ff_exp, shape.n_ff_shexp
    return [TensorSpec(f"{p}.ffn_gate_inp.weight", (E, X), ROUTER),
            TensorSpec(f"{p}.ffn_gate_exps.weight", (E, Fx, X), IN_PROJ),
            TensorSpec(f"{p}.ffn_up_exps.weight", (E, Fx, X), IN_PROJ),
            TensorSpec(f"{p}.ffn_down_exps.weight", (Fx, E, X), OUT_PROJ),
            # HF stores the shared expert's gate as a (1, hidden) linear layer: a 2-D tensor
            TensorSpec(f"{p}.ffn_gate_inp_shexp.weight", (E, 1), ROUTER),
            TensorSpec(f"{p}.ffn_gate_shexp.weight", (E, Fs), IN_PROJ),
            TensorSpec(f"{p}.ffn_up_shexp.weight", (E, Fs), IN_PROJ),
            TensorSpec(f"{p}.ffn_down_shexp.weight", (Fs, E), OUT_PROJ)]


def tensor_specs(shape: Shape) -> list[TensorSpec]:
    """Every tensor of the model, in file order."""
    E = shape.n_embd
    V = shape.vocab_size
    specs = [TensorSpec("token_embd.weight", (E, V), EMBD)]

    def attn_block(p: str) -> list[TensorSpec]:
        q = shape.n_head * shape.head_dim
        kv = shape.n_head_kv * shape.head_dim
        return [TensorSpec(f"{p}.attn_q.weight", (E, 2 * q), IN_PROJ),
                TensorSpec(f"{p}.attn_k.weight", (E, kv), IN_PROJ),
                TensorSpec(f"{p}.attn_v.weight", (E, kv), IN_PROJ),
                TensorSpec(f"{p}.attn_output.weight", (q, E), OUT_PROJ),
                TensorSpec(f"{p}.attn_q_norm.weight", (shape.head_dim,), NORM),
                TensorSpec(f"{p}.attn_k_norm.weight", (shape.head_dim,), NORM)]

    def common(p: str) -> list[TensorSpec]:
        return [TensorSpec(f"{p}.attn_norm.weight", (E,), NORM),
                TensorSpec(f"{p}.post_attention_norm.weight", (E,), NORM)] + ffn_specs(shape, p)

    hv, inner = shape.linear_n_v_heads, shape.ssm_inner
    for il in range(shape.n_layer):
        p = f"blk.{il}"
        specs += common(p)
        if shape.is_recurrent(il):
            specs += [TensorSpec(f"{p}.attn_qkv.weight", (E, shape.conv_dim), IN_PROJ),
                      TensorSpec(f"{p}.attn_gate.weight", (E, inner), IN_PROJ),
                      TensorSpec(f"{p}.ssm_beta.weight", (E, hv), IN_PROJ),
                      TensorSpec(f"{p}.ssm_alpha.weight", (E, hv), IN_PROJ),
                      TensorSpec(f"{p}.ssm_conv1d.weight", (shape.conv_kernel, shape.conv_dim),
                                 CONV),
                      TensorSpec(f"{p}.ssm_dt.bias", (hv,), DT_BIAS),
                      TensorSpec(f"{p}.ssm_a", (hv,), SSM_A),
                      TensorSpec(f"{p}.ssm_norm.weight", (shape.linear_head_dim,), NORM),
                      TensorSpec(f"{p}.ssm_out.weight", (inner, E), OUT_PROJ)]
        else:
            specs += attn_block(p)
    for j in range(shape.n_mtp):
        p = f"blk.{shape.n_layer + j}"
        specs += common(p) + attn_block(p)
        specs += [TensorSpec(f"{p}.nextn.eh_proj.weight", (2 * E, E), EH_PROJ),
                  TensorSpec(f"{p}.nextn.enorm.weight", (E,), NORM),
                  TensorSpec(f"{p}.nextn.hnorm.weight", (E,), NORM),
                  TensorSpec(f"{p}.nextn.shared_head_norm.weight", (E,), NORM)]
    specs += [TensorSpec("output_norm.weight", (E,), NORM),
              TensorSpec("output.weight", (E, V), OUTPUT)]
    return specs


@lru_cache(maxsize=8)
def _hadamard(p: int) -> npt.NDArray[np.int8]:
    idx = np.arange(p, dtype=np.uint32)
    both = idx[:, None] & idx[None, :]
    parity = np.zeros_like(both)
    for bit in range(max(1, p.bit_length())):       # popcount parity (numpy < 2 has no bitwise_count)
        parity ^= (both >> np.uint32(bit)) & np.uint32(1)
    out: npt.NDArray[np.int8] = (1 - 2 * parity).astype(np.int8)
    return out


class Codes:
    """The orthogonal +-1 code vectors ``u_0 .. u_{n-1}`` (length ``n_embd``) of a script."""

    def __init__(self, n_embd: int, n: int, seed: int) -> None:
        p = n_embd & -n_embd           # largest power of two dividing n_embd
        if n > p:
            raise ValueError(f"a {n}-token script needs n_embd divisible by a power of two "
                             f">= {n}; n_embd={n_embd} allows {p}")
        rng = np.random.default_rng([seed, 0xC0DE])
        sign = rng.choice(np.array([-1, 1], dtype=np.int8), size=n_embd)
        rows = rng.permutation(p)[:n]
        h = _hadamard(p)[rows]                              # (n, p)
        self.u: F32 = (np.tile(h, (1, n_embd // p)) * sign).astype(np.float32)   # (n, E)
        self.n = n
        self.n_embd = n_embd


def _rng(seed: int, name: str, chunk: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), chunk])


def noise_std(spec: TensorSpec, shape: Shape) -> float:
    """Standard deviation of the random part of a tensor."""
    if spec.role in (IN_PROJ, ROUTER):
        return float(1.0 / np.sqrt(spec.row_len))
    if spec.role == OUT_PROJ:
        per_layer = shape.residual_scale / np.sqrt(2 * max(1, shape.n_layer))
        return float(per_layer / (0.6 * np.sqrt(spec.row_len)))
    if spec.role == EMBD:
        return EMBD_NOISE
    if spec.role == OUTPUT:
        return float(OUTPUT_NOISE_LOGIT / np.sqrt(spec.row_len))
    if spec.role == EH_PROJ:
        return float(0.02 / np.sqrt(spec.row_len))
    if spec.role == CONV:
        return float(1.0 / np.sqrt(spec.shape[0]))
    return NORM_NOISE


def is_structured(spec: TensorSpec) -> bool:
    """The tensor carries the behaviour (anything else is plain noise)."""
    return spec.role in (EMBD, OUTPUT, EH_PROJ) or spec.role in KEEP_F32


def output_signal_rows(spec: TensorSpec, behaviour: Behaviour, codes: Codes,
                       seed: int) -> dict[int, F32]:
    """The rows of ``output`` that carry the behaviour (successors of script tokens), noise
    included, for writers that fill every other row with noise directly."""
    if spec.role != OUTPUT:
        raise ValueError("only the output matrix has signal rows")
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), 0x516])
    E = spec.row_len
    rows: dict[int, F32] = {}
    for i in range(behaviour.n):
        succ = behaviour.script[(i + 1) % behaviour.n]
        noise = (OUTPUT_NOISE_LOGIT / np.sqrt(E)) * rng.standard_normal(E, dtype=np.float32)
        rows[succ] = (noise + (SUCCESSOR_LOGIT / E) * codes.u[i]).astype(np.float32)
    return rows


def generate_rows(spec: TensorSpec, shape: Shape, behaviour: Behaviour, codes: Codes,
                  seed: int) -> Iterator[tuple[int, F32]]:
    """``(first_row, rows)`` chunks of the tensor's float values (``rows``: (k, ne0))."""
    std = noise_std(spec, shape)
    E = shape.n_embd
    for c, start in enumerate(range(0, spec.n_rows, CHUNK_ROWS)):
        stop = min(spec.n_rows, start + CHUNK_ROWS)
        rng = _rng(seed, spec.name, c)
        k = stop - start
        if spec.role == SSM_A:
            vals = -rng.uniform(0.5, 2.0, size=(k, spec.row_len)).astype(np.float32)
        elif spec.role == DT_BIAS:
            vals = (0.5 + 0.1 * rng.standard_normal((k, spec.row_len), dtype=np.float32))
        elif spec.role == NORM:
            vals = 1.0 + std * rng.standard_normal((k, spec.row_len), dtype=np.float32)
        else:
            vals = std * rng.standard_normal((k, spec.row_len), dtype=np.float32)
        if spec.role == EMBD:
            pos = np.full(k, codes.n - 1, dtype=np.int64)
            for i, tok in enumerate(behaviour.script):
                if start <= tok < stop:
                    pos[tok - start] = i
            vals += codes.u[pos]
        elif spec.role == OUTPUT:
            for i, tok in enumerate(behaviour.script):
                succ = behaviour.script[(i + 1) % behaviour.n]
                if start <= succ < stop:
                    vals[succ - start] += (SUCCESSOR_LOGIT / E) * codes.u[i]
        elif spec.role == EH_PROJ:
            # rows = E outputs, columns = [embedding half | hidden half]
            tau = [(i + 1) % codes.n if i in behaviour.wrong else i for i in range(codes.n)]
            m = codes.u[tau].T @ codes.u / E          # (E, E): u_i -> u_tau(i)
            vals[:, :E] += m[start:stop]
        yield start, vals.astype(np.float32, copy=False)
