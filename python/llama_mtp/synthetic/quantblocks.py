"""Writing ggml quantized blocks directly from numpy (no f32 model in memory, no requantize).

Two ways to make blocks:

* :func:`encode` quantizes float rows with a simple per-sub-block min/max (Q4_K, Q5_K) or
  absmax (Q6_K, Q8_0) rule: valid blocks, a little less accurate than llama.cpp's search.
* :func:`noise_blocks` draws random codes under fixed block scales, which dequantize to uniform
  noise of a chosen standard deviation: the fastest way to fill a large weight matrix whose
  values only need to be small and non-zero.

The byte layouts are those of ggml (checked against ``gguf.quants.dequantize`` in the tests).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["QK_K", "BLOCK_BYTES", "BLOCK_SIZE", "DIRECT_TYPES", "encode", "noise_blocks",
           "row_bytes"]

QK_K = 256
BLOCK_SIZE = {"Q4_K": QK_K, "Q5_K": QK_K, "Q6_K": QK_K, "Q8_0": 32}
BLOCK_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "Q8_0": 34}
DIRECT_TYPES = frozenset(BLOCK_SIZE)
"""ggml types this module writes (plus F32/F16, written as plain arrays by the writer)."""

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def row_bytes(qtype: str, n: int) -> int:
    """Bytes of one row of ``n`` values."""
    if qtype == "F32":
        return 4 * n
    if qtype in ("F16", "BF16"):
        return 2 * n
    bs = BLOCK_SIZE[qtype]
    if n % bs:
        raise ValueError(f"{qtype} rows need a multiple of {bs} values, got {n}")
    return n // bs * BLOCK_BYTES[qtype]


def _f16_bytes(x: npt.NDArray[np.float32]) -> U8:
    return np.ascontiguousarray(x.astype(np.float16)).view(np.uint8).reshape(x.shape[0], 2)


def _pack_k_scales(sc: npt.NDArray[np.uint8], mn: npt.NDArray[np.uint8]) -> U8:
    """Pack 8 six-bit scales and mins per block into ggml's 12-byte layout (Q4_K, Q5_K)."""
    out = np.empty((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 0x3F) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (mn[:, 0:4] & 0x3F) | ((mn[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((mn[:, 4:8] & 0x0F) << 4)
    return out


def _k_scales(x: F32, qmax: int) -> tuple[U8, U8, F32, F32, F32]:
    """Min/max scales for (n_blocks, 8, 32) values: d, dmin (f16-rounded), sc, mn, and q."""
    lo = np.minimum(x.min(axis=2), 0.0)
    hi = x.max(axis=2)
    scale = (hi - lo) / qmax                       # (nb, 8)
    offset = -lo
    d = scale.max(axis=1) / 63.0
    dmin = offset.max(axis=1) / 63.0
    d = d.astype(np.float16).astype(np.float32)
    dmin = dmin.astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.rint(scale / d[:, None]), 0).clip(0, 63)
        mn = np.where(dmin[:, None] > 0, np.rint(offset / dmin[:, None]), 0).clip(0, 63)
        step = d[:, None] * sc
        q = np.where(step[:, :, None] > 0,
                     np.rint((x + (dmin[:, None] * mn)[:, :, None]) / step[:, :, None]), 0)
    q = q.clip(0, qmax)
    return sc.astype(np.uint8), mn.astype(np.uint8), d, dmin, q.astype(np.float32)


def _encode_q4_k(x: F32) -> U8:
    nb = x.shape[0] // QK_K
    xb = x.reshape(nb, 8, 32)
    sc, mn, d, dmin, q = _k_scales(xb, 15)
    qi = q.astype(np.uint8).reshape(nb, 4, 2, 32)
    qs = (qi[:, :, 0, :] | (qi[:, :, 1, :] << 4)).reshape(nb, 128)
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_k_scales(sc, mn), qs], axis=1)


def _encode_q5_k(x: F32) -> U8:
    nb = x.shape[0] // QK_K
    xb = x.reshape(nb, 8, 32)
    sc, mn, d, dmin, q = _k_scales(xb, 31)
    qi = q.astype(np.uint8)                        # (nb, 8, 32)
    low = (qi & 0x0F).reshape(nb, 4, 2, 32)
    qs = (low[:, :, 0, :] | (low[:, :, 1, :] << 4)).reshape(nb, 128)
    high = (qi >> 4) & 1                           # (nb, 8, 32)
    qh = np.zeros((nb, 32), dtype=np.uint8)
    for j in range(8):
        qh |= (high[:, j, :] << j).astype(np.uint8)
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_k_scales(sc, mn), qh, qs],
                          axis=1)


def _encode_q6_k(x: F32) -> U8:
    nb = x.shape[0] // QK_K
    xg = x.reshape(nb, 16, 16)
    amax_i = np.abs(xg).argmax(axis=2)
    signed = np.take_along_axis(xg, amax_i[:, :, None], axis=2)[:, :, 0]
    scale = -signed / 32.0                          # q - 32 in [-32, 31]
    d = np.abs(scale).max(axis=1) / 127.0
    d = d.astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.rint(scale / d[:, None]), 0).clip(-128, 127)
        step = d[:, None] * sc
        q = np.where(step[:, :, None] != 0, np.rint(xg / step[:, :, None]), 0)
    q = (q.clip(-32, 31) + 32).astype(np.uint8).reshape(nb, 2, 2, 64)   # (half, nibble, 64)
    low = q & 0x0F
    ql = (low[:, :, 0, :] | (low[:, :, 1, :] << 4)).reshape(nb, 128)
    hi = (q >> 4).reshape(nb, 2, 4, 32)                                   # (half, k, 32)
    qh = (hi[:, :, 0, :] | (hi[:, :, 1, :] << 2) | (hi[:, :, 2, :] << 4)
          | (hi[:, :, 3, :] << 6)).reshape(nb, 64)
    scales = sc.astype(np.int8).view(np.uint8)
    return np.concatenate([ql, qh, scales, _f16_bytes(d)], axis=1)


def _encode_q8_0(x: F32) -> U8:
    nb = x.shape[0] // 32
    xb = x.reshape(nb, 32)
    d = (np.abs(xb).max(axis=1) / 127.0).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(d[:, None] > 0, np.rint(xb / d[:, None]), 0).clip(-127, 127)
    return np.concatenate([_f16_bytes(d), q.astype(np.int8).view(np.uint8)], axis=1)


_ENCODERS = {"Q4_K": _encode_q4_k, "Q5_K": _encode_q5_k, "Q6_K": _encode_q6_k,
             "Q8_0": _encode_q8_0}


def encode(rows: npt.NDArray[np.float32], qtype: str) -> bytes:
    """Quantize float rows (``(n_rows, n)``, ``n`` a multiple of the block size) to ``qtype``."""
    x = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1)
    if qtype == "F32":
        return x.tobytes()
    if qtype == "F16":
        return x.astype(np.float16).tobytes()
    enc = _ENCODERS[qtype]
    if x.size % BLOCK_SIZE[qtype]:
        raise ValueError(f"{qtype}: row length must be a multiple of {BLOCK_SIZE[qtype]}")
    return enc(x).tobytes()


# standard deviation of the uniform code distribution, in units of the code step
_CODE_STD = {"Q4_K": float(np.sqrt((16**2 - 1) / 12)), "Q5_K": float(np.sqrt((32**2 - 1) / 12)),
             "Q6_K": float(np.sqrt((64**2 - 1) / 12)), "Q8_0": float(np.sqrt((256**2 - 1) / 12))}


def noise_blocks(rng: np.random.Generator, n_values: int, qtype: str, std: float) -> bytes:
    """Blocks holding uniform noise of standard deviation ``std`` (random codes, fixed scales)."""
    bs = BLOCK_SIZE[qtype]
    if n_values % bs:
        raise ValueError(f"{qtype}: need a multiple of {bs} values")
    nb = n_values // bs
    step = np.float32(std / _CODE_STD[qtype])
    if qtype == "Q8_0":
        out = np.empty((nb, 34), dtype=np.uint8)
        out[:, 0:2] = np.frombuffer(np.float16(step).tobytes(), dtype=np.uint8)
        out[:, 2:] = np.frombuffer(rng.bytes(nb * 32), dtype=np.uint8).reshape(nb, 32)
        return out.tobytes()
    if qtype == "Q6_K":
        out = np.empty((nb, 210), dtype=np.uint8)
        out[:, :192] = np.frombuffer(rng.bytes(nb * 192), dtype=np.uint8).reshape(nb, 192)
        out[:, 192:208] = 1
        out[:, 208:210] = np.frombuffer(np.float16(step).tobytes(), dtype=np.uint8)
        return out.tobytes()
    levels = 16 if qtype == "Q4_K" else 32
    head = np.concatenate([
        np.frombuffer(np.float16(step).tobytes(), dtype=np.uint8),
        np.frombuffer(np.float16(step * (levels - 1) / 2).tobytes(), dtype=np.uint8),
        np.array([1] * 8 + [0x11] * 4, dtype=np.uint8)])
    nbytes = BLOCK_BYTES[qtype]
    out = np.empty((nb, nbytes), dtype=np.uint8)
    out[:, :16] = head
    out[:, 16:] = np.frombuffer(rng.bytes(nb * (nbytes - 16)), dtype=np.uint8).reshape(nb, -1)
    return out.tobytes()
