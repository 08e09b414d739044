"""Mutation strategies for GGUF files: raw (bytes) and structure-aware (metadata, vocabulary,
hyperparameters, tensor table).

Every mutant is a pure function of (base file, seed): ``mutate(base, seed)`` draws the strategy
and its parameters from ``random.Random(seed)``, so a seed reproduces its mutant exactly.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

from .gguf_struct import (BLOCKS, KV, GGUFStruct, GGUFType, Scalar, TensorInfo, Value, nbytes,
                          parse, relayout, serialize)

__all__ = ["Base", "Mutant", "STRATEGIES", "mutate", "strategy_names"]

T = GGUFType

# Integers that break code: zero, one, sign and width boundaries, powers of two.
INTERESTING = [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256,
               257, 511, 512, 513, 1023, 1024, 4096, 32768, 65535, 65536, 2**24, 2**31 - 1, 2**31,
               2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -1, -2, -128]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, -1e-6, 1e38, 3.4e38, float("inf"), float("-inf"),
          float("nan"), 65504.0, 1e6]
# ggml types: every valid one, the removed Q4_2/Q4_3 (4, 5), and past the end.
GGML_TYPES = list(range(0, 45)) + [255, 2**31, 2**32 - 1]


@dataclass(frozen=True)
class Mutant:
    seed: int
    strategy: str
    detail: str
    data: bytes


class Base:
    """The unmutated file, parsed once."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.g = parse(raw)
        self.arch = self.g.arch
        self.meta_end = self.g.kv_spans[-1][1] if self.g.kv_spans else 24
        self.table_end = self.g.tensor_spans[-1][1] if self.g.tensor_spans else self.meta_end
        self.int_fields = self._int_fields()
        self.n_vocab = len(self._list("tokenizer.ggml.tokens"))

    def _list(self, key: str) -> list[Scalar]:
        kv = self.g.kv(key)
        return kv.value if kv is not None and isinstance(kv.value, list) else []

    def _int_fields(self) -> list[tuple[int, int]]:
        """(offset, width) of every integer field of the header, the metadata (except inside big
        arrays) and the tensor table: where an overwritten integer means something."""
        fields = [(4, 4), (8, 8), (16, 8)]
        for (start, end), kv in zip(self.g.kv_spans, self.g.kvs):
            fields.append((start, 8))                        # key length
            p = start + 8 + len(kv.key)
            fields.append((p, 4))                            # value type
            if kv.vtype == T.ARRAY:
                fields += [(p + 4, 4), (p + 8, 8)]           # element type, count
                if kv.subtype == T.STRING and isinstance(kv.value, list) and kv.value:
                    fields.append((p + 16, 8))               # first string's length
            elif kv.vtype == T.STRING:
                fields.append((p + 4, 8))
            elif kv.vtype in T.FMT:
                fields.append((p + 4, struct.calcsize(T.FMT[kv.vtype])))
        for (start, end), t in zip(self.g.tensor_spans, self.g.tensors):
            fields.append((start, 8))
            p = start + 8 + len(t.name)
            fields.append((p, 4))                            # n_dims
            fields += [(p + 4 + 8 * i, 8) for i in range(len(t.dims))]
            fields += [(end - 12, 4), (end - 8, 8)]          # type, offset
        return fields

    def key(self, suffix: str) -> str:
        """``<arch>.suffix``."""
        return f"{self.arch}.{suffix}"


# -- helpers ----------------------------------------------------------------------------------

def _int_choice(rng: random.Random, v: int) -> int:
    r = rng.random()
    if r < 0.45:
        return rng.choice([0, 1, 2, v - 1, v + 1, 2 * v, v // 2, v * 4, v + 2, v - 2, 3 * v])
    if r < 0.85:
        return rng.choice(INTERESTING)
    return rng.randrange(0, max(2, 3 * v + 2))


def _int_kv(g: GGUFStruct, key: str, default: int = 0) -> int:
    kv = g.kv(key)
    return kv.value if kv is not None and isinstance(kv.value, int) else default


def _convert(value: Value, vtype: int) -> Value:
    """``value`` written as type ``vtype`` (as a careless converter might)."""
    first: Scalar = value[0] if isinstance(value, list) and value else (
        0 if isinstance(value, list) else value)
    if vtype == T.STRING:
        return str(first).encode() if not isinstance(first, bytes) else first
    if vtype == T.BOOL:
        return bool(first) if not isinstance(first, bytes) else bool(first)
    if vtype in T.FLOAT:
        return float(first) if not isinstance(first, bytes) else 1.5
    if isinstance(first, bytes):
        return len(first)
    if isinstance(first, float):
        return int(first) if math.isfinite(first) else 0
    return int(first)


def _reserialize(g: GGUFStruct) -> bytes:
    return serialize(g)


# -- raw strategies ----------------------------------------------------------------------------

def byte_flip(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """A few bytes of the header, metadata or tensor table set to random values / bit flips."""
    data = bytearray(b.raw)
    n = rng.choice([1, 1, 1, 2, 3, 4, 8])
    where = []
    for _ in range(n):
        region = rng.random()
        hi = b.meta_end if region < 0.6 else b.table_end
        pos = rng.randrange(4, hi)
        if rng.random() < 0.5:
            data[pos] ^= 1 << rng.randrange(8)
        else:
            data[pos] = rng.randrange(256)
        where.append(pos)
    return f"{n} byte(s) at {where}", bytes(data)


def data_flip(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """Bytes of the tensor data changed: NaN/inf weights, broken quantization scales."""
    data = bytearray(b.raw)
    t = rng.choice(b.g.tensors)
    start = b.g.data_offset + t.offset
    others = sorted(x.offset for x in b.g.tensors if x.offset > t.offset)
    end = b.g.data_offset + others[0] if others else len(data)
    n = rng.choice([1, 4, 64, end - start])
    fill = rng.choice([b"\xff", b"\x7f\xc0", b"\x00\x7c", b"\x00"])    # NaN f32/f16 bits, inf, 0
    for i in range(start, min(end, start + n)):
        data[i] = fill[(i - start) % len(fill)]
    return f"{t.label}: {min(n, end - start)} bytes of {fill.hex()}", bytes(data)


def truncate(rng: random.Random, b: Base) -> tuple[str, bytes]:
    r = rng.random()
    if r < 0.3:
        cut = rng.randrange(0, b.table_end + 1)
    elif r < 0.5:
        cut = rng.choice([b.g.data_offset, b.g.data_offset - 1, len(b.raw) - 1, len(b.raw) - 32])
    else:
        cut = rng.randrange(b.g.data_offset, len(b.raw))
    return f"cut at {cut} of {len(b.raw)}", b.raw[:cut]


def overwrite_int(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """An integer field (a length, count, type, dimension, offset or value) overwritten."""
    data = bytearray(b.raw)
    if rng.random() < 0.8:
        pos, width = rng.choice(b.int_fields)
    else:
        width = rng.choice([1, 2, 4, 8])
        pos = rng.randrange(4, b.table_end - width)
    old = int.from_bytes(data[pos:pos + width], "little")
    new = _int_choice(rng, old) & ((1 << (8 * width)) - 1)
    if new == old:
        new ^= 1
    data[pos:pos + width] = new.to_bytes(width, "little")
    return f"u{8 * width} at {pos}: {old} -> {new}", bytes(data)


def splice(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """A range copied over another (same length), inserted (file grows) or deleted."""
    data = bytearray(b.raw)
    hi = b.table_end
    n = rng.choice([1, 2, 4, 8, 16, 64, 256])
    src = rng.randrange(0, max(1, hi - n))
    dst = rng.randrange(4, max(5, hi - n))
    mode = rng.choice(["overwrite", "insert", "delete"])
    if mode == "overwrite":
        data[dst:dst + n] = b.raw[src:src + n]
    elif mode == "insert":
        data[dst:dst] = b.raw[src:src + n]
    else:
        del data[dst:dst + n]
    return f"{mode} {n} bytes from {src} at {dst}", bytes(data)


# -- structure-aware strategies ------------------------------------------------------------------

def kv_wrong_type(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """A known key written with another type (u32 as i32/f32/string/array, arrays as scalars,
    array elements of another type), or an invalid type code."""
    g = b.g.copy()
    i = rng.randrange(len(g.kvs))
    kv = g.kvs[i]
    if kv.vtype == T.ARRAY and isinstance(kv.value, list):
        choice = rng.random()
        if choice < 0.5 and len(kv.value) < 100_000:
            sub = rng.choice([t for t in range(13) if t not in (T.ARRAY, kv.subtype)])
            g.kvs[i] = KV(kv.key, T.ARRAY, [_convert([x], sub) for x in kv.value], sub)  # type: ignore[misc]
            detail = f"{kv.name}: array of {T.NAMES.get(kv.subtype or 0)} -> array of {T.NAMES[sub]}"
        else:
            new = rng.choice([T.UINT32, T.INT32, T.STRING, T.FLOAT32, T.UINT64])
            g.kvs[i] = KV(kv.key, new, _convert(kv.value, new))
            detail = f"{kv.name}: array -> {T.NAMES[new]}"
    else:
        r = rng.random()
        if r < 0.15:
            new_sub = kv.vtype if kv.vtype != T.ARRAY else T.UINT32
            g.kvs[i] = KV(kv.key, T.ARRAY, [kv.value] * rng.choice([0, 1, 2, 4]), new_sub)  # type: ignore[list-item]
            detail = f"{kv.name}: {T.NAMES.get(kv.vtype)} -> array"
        elif r < 0.2:
            code = rng.choice([13, 14, 255, 2**31])
            g.kvs[i] = KV(kv.key, code, kv.value)
            detail = f"{kv.name}: type code {code}"
        else:
            new = rng.choice([t for t in range(13) if t not in (T.ARRAY, kv.vtype)])
            g.kvs[i] = KV(kv.key, new, _convert(kv.value, new))
            detail = f"{kv.name}: {T.NAMES.get(kv.vtype)} -> {T.NAMES[new]}"
    return detail, _reserialize(g)


def kv_value(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """A scalar value changed within its type: boundary integers, NaN/inf floats, other strings."""
    g = b.g.copy()
    scalars = [i for i, kv in enumerate(g.kvs) if kv.vtype != T.ARRAY]
    i = rng.choice(scalars)
    kv = g.kvs[i]
    new: Value
    if kv.vtype in T.INTEGER and isinstance(kv.value, int):
        new = _int_choice(rng, kv.value)
    elif kv.vtype in T.FLOAT:
        new = rng.choice(FLOATS)
    elif kv.vtype == T.BOOL:
        new = not kv.value
    else:
        v = kv.value if isinstance(kv.value, bytes) else b""
        new = rng.choice([b"", b"x", v[: len(v) // 2], v + v[:8], b"\xff\xfe", b"{{ x",
                          b"\x00" + v, b"bogus"])
    g.kvs[i] = KV(kv.key, kv.vtype, new, kv.subtype)
    return f"{kv.name}: {str(kv.value)[:40]} -> {str(new)[:40]}", _reserialize(g)


def kv_drop_or_duplicate(rng: random.Random, b: Base) -> tuple[str, bytes]:
    g = b.g.copy()
    i = rng.randrange(len(g.kvs))
    kv = g.kvs[i]
    if rng.random() < 0.7:
        del g.kvs[i]
        return f"dropped {kv.name}", _reserialize(g)
    g.kvs.insert(rng.randrange(len(g.kvs) + 1), kv)
    return f"duplicated {kv.name}", _reserialize(g)


def kv_strings(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """The string keys that select code paths: architecture, tokenizer model / pre-tokenizer,
    RoPE scaling type, pooling."""
    g = b.g.copy()
    key, values = rng.choice([
        ("general.architecture", [b"qwen35moe", b"qwen35", b"qwen3next", b"llama", b"qwen3",
                                  b"mamba", b"", b"qwen35\x00"]),
        ("tokenizer.ggml.model", [b"llama", b"bert", b"t5", b"rwkv", b"none", b"no_vocab",
                                  b"plamo2", b"gemma4", b"bogus", b""]),
        ("tokenizer.ggml.pre", [b"default", b"qwen2", b"llama3", b"gpt-4o", b"bogus", b""]),
        (b.key("rope.scaling.type"), [b"none", b"linear", b"yarn", b"longrope", b"bogus", b""]),
    ])
    new = rng.choice(values)
    old = g.kv(key)
    if key == "general.architecture" and new != b.arch.encode():
        # move every <arch>.* key along half of the time (a file of another architecture)
        if rng.random() < 0.5:
            for j, kv in enumerate(g.kvs):
                if kv.key.startswith(b.arch.encode() + b"."):
                    g.kvs[j] = replace(kv, key=new + kv.key[len(b.arch):])
    g.set(key, T.STRING, new)
    return f"{key}: {old.value if old else None!r} -> {new!r}", _reserialize(g)


def array_length(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """An array made shorter, longer or empty (rope sections, recurrent layers, vocabulary
    arrays, per-layer hyperparameters)."""
    g = b.g.copy()
    arrays = [i for i, kv in enumerate(g.kvs) if kv.vtype == T.ARRAY]
    i = rng.choice(arrays)
    kv = g.kvs[i]
    items = list(kv.value) if isinstance(kv.value, list) else []
    n = len(items)
    new_n = rng.choice([0, 1, max(0, n - 1), n + 1, 2 * n, max(0, n // 2), n + 3, 3, 5])
    if new_n <= n:
        new_items = items[:new_n]
    else:
        fill = items[-1] if items else 0
        new_items = items + [fill] * (new_n - n)
    g.kvs[i] = KV(kv.key, kv.vtype, new_items, kv.subtype)
    return f"{kv.name}: length {n} -> {new_n}", _reserialize(g)


def array_elements(rng: random.Random, b: Base) -> tuple[str, bytes]:
    g = b.g.copy()
    arrays = [i for i, kv in enumerate(g.kvs) if kv.vtype == T.ARRAY and kv.value]
    i = rng.choice(arrays)
    kv = g.kvs[i]
    items = list(kv.value) if isinstance(kv.value, list) else []
    k = rng.choice([1, 1, 2, len(items)])
    changed = []
    for _ in range(min(k, len(items))):
        j = rng.randrange(len(items))
        x = items[j]
        if isinstance(x, bool):
            items[j] = not x
        elif isinstance(x, int):
            items[j] = _int_choice(rng, x)
        elif isinstance(x, float):
            items[j] = rng.choice(FLOATS)
        else:
            items[j] = rng.choice([b"", items[rng.randrange(len(items))], b" ", b"a b c", b"\xff",
                                   bytes(x)[::-1] if isinstance(x, bytes) else b"?"])
        changed.append(j)
    g.kvs[i] = KV(kv.key, kv.vtype, items, kv.subtype)
    return f"{kv.name}: elements {changed[:8]}", _reserialize(g)


def vocab(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """Vocabulary damage: duplicate or empty token strings, token types, merges, and the
    lengths of the three arrays."""
    g = b.g.copy()
    tokens = list(b._list("tokenizer.ggml.tokens"))
    n = len(tokens)
    kind = rng.choice(["dup", "dup", "empty", "empty_collision", "types", "merges",
                       "lengths", "scores"])
    if kind == "dup":
        i, j = rng.randrange(n), rng.randrange(n)
        tokens[i] = tokens[j]
        detail = f"token {i} := token {j} ({tokens[j]!r})"
    elif kind == "empty":
        i = rng.randrange(n)
        tokens[i] = b""
        detail = f"token {i} empty"
    elif kind == "empty_collision":
        # llama.cpp names an empty token "[EMPTY_<i>]": a real token of that name collides
        i, j = rng.randrange(n), rng.randrange(n)
        tokens[i] = b""
        tokens[j] = f"[EMPTY_{i}]".encode()
        detail = f"token {i} empty, token {j} = [EMPTY_{i}]"
    elif kind == "types":
        types = list(b._list("tokenizer.ggml.token_type"))
        k = rng.choice([1, 5, len(types)])
        for _ in range(k):
            types[rng.randrange(len(types))] = rng.choice([-1, 0, 2, 3, 4, 5, 6, 7, 100, 2**31 - 1])
        g.set("tokenizer.ggml.token_type", T.ARRAY, types, T.INT32)
        detail = f"{k} token types"
    elif kind == "merges":
        merges = list(b._list("tokenizer.ggml.merges"))
        k = rng.choice([1, 3, 20])
        for _ in range(k):
            merges[rng.randrange(len(merges))] = rng.choice(
                [b"", b" ", b"a", b"a b c", b"  ", b"\xff \xfe", merges[rng.randrange(len(merges))],
                 tokens[rng.randrange(n)]])
        g.set("tokenizer.ggml.merges", T.ARRAY, merges, T.STRING)
        detail = f"{k} merges"
    elif kind == "lengths":
        key = rng.choice(["tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                          "tokenizer.ggml.merges"])
        kv = g.kv(key)
        items = list(kv.value) if kv is not None and isinstance(kv.value, list) else []
        new_n = rng.choice([0, 1, len(items) - 1, len(items) + 1, len(items) // 2, 2 * len(items)])
        items = items[:new_n] + [items[-1] if items else b"x"] * max(0, new_n - len(items))
        if key == "tokenizer.ggml.tokens" and new_n > n:        # keep the new tokens distinct
            items = items[:n] + [f"<extra_{k}>".encode() for k in range(new_n - n)]
        g.set(key, T.ARRAY, items, kv.subtype if kv else T.STRING)
        detail = f"{key}: length -> {new_n}"
        return detail, _reserialize(g)
    else:
        sub = rng.choice([T.FLOAT32, T.INT32, T.UINT32])
        k = rng.choice([0, n - 1, n, n + 5])
        scores: list[Scalar] = [rng.choice(FLOATS) if sub == T.FLOAT32 else rng.randrange(-5, 5)
                                for _ in range(k)]
        g.set("tokenizer.ggml.scores", T.ARRAY, scores, sub)
        detail = f"scores: {k} x {T.NAMES[sub]}"
        return detail, _reserialize(g)
    if kind in ("dup", "empty", "empty_collision"):
        g.set("tokenizer.ggml.tokens", T.ARRAY, tokens, T.STRING)
    return detail, _reserialize(g)


SPECIAL_KEYS = ["bos_token_id", "eos_token_id", "eot_token_id", "eom_token_id", "unknown_token_id",
                "seperator_token_id", "padding_token_id", "mask_token_id", "fim_pre_token_id",
                "fim_suf_token_id", "fim_mid_token_id", "fim_pad_token_id", "fim_rep_token_id",
                "fim_sep_token_id"]


def special_tokens(rng: random.Random, b: Base) -> tuple[str, bytes]:
    g = b.g.copy()
    key = "tokenizer.ggml." + rng.choice(SPECIAL_KEYS)
    value = rng.choice([b.n_vocab, b.n_vocab - 1, b.n_vocab + 1, 0, 2**31 - 1, 2**31, 2**32 - 1,
                        rng.randrange(max(1, b.n_vocab))])
    vtype = rng.choice([T.UINT32, T.UINT32, T.INT32])
    g.set(key, vtype, value)
    extra = ""
    if rng.random() < 0.3:
        flag = rng.choice(["add_bos_token", "add_eos_token", "add_sep_token"])
        g.set("tokenizer.ggml." + flag, T.BOOL, True)
        extra = f", {flag}=true"
    return f"{key} = {value} ({T.NAMES[vtype]}){extra}", _reserialize(g)


def hparams(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """The qwen35 / qwen35moe hyperparameters that llama.cpp does not check against the tensors:
    RoPE dimensions vs head size, head counts, DeltaNet sizes, layer counts, MTP layers, expert
    counts, norms, RoPE scaling."""
    g = b.g.copy()
    k = b.key
    head = _int_kv(g, k("attention.key_length"), 128)
    n_rot = _int_kv(g, k("rope.dimension_count"), head // 4)
    n_head = _int_kv(g, k("attention.head_count"), 2)
    n_layer_all = _int_kv(g, k("block_count"), 4)
    n_expert = _int_kv(g, k("expert_count"), 0)
    U = T.UINT32
    cases: list[tuple[str, Callable[[], str]]] = []

    def setu(key: str, v: int, vtype: int = U) -> str:
        g.set(key, vtype, v)
        return f"{key}={v}"

    def put(key: str, vtype: int, value: Value, subtype: int | None = None) -> str:
        g.set(key, vtype, value, subtype)
        return f"{key}={str(value)[:60]}"

    def without(key: str, then: str) -> str:
        g.drop(key)
        return f"no {key}, {then}"

    def per_layer() -> list[Scalar]:
        n = rng.choice([n_layer_all, n_layer_all, n_layer_all + 1, 1])
        return [rng.choice([0, 1, 2, 3, n_head]) for _ in range(n)]

    def recurrent_flags() -> list[Scalar]:
        n = rng.choice([n_layer_all, n_layer_all, n_layer_all - 1])
        return [rng.random() < 0.5 for _ in range(n)]

    cases += [
        ("rope_dims", lambda: setu(k("rope.dimension_count"),
                                   rng.choice([head + 2, 2 * head, head + 1, n_rot + 1, 0, 1, 3,
                                               head, 2**31, 4 * head]))),
        ("rope_sections", lambda: put(k("rope.dimension_sections"), T.ARRAY,
                                      [rng.choice([0, 1, n_rot, n_rot // 2, head, 2**31 - 1, -1,
                                                   -n_rot]) for _ in range(4)],
                                      rng.choice([T.INT32, T.UINT32]))),
        ("head_len", lambda: setu(k(rng.choice(["attention.key_length", "attention.value_length"])),
                                  rng.choice([head // 2, head * 2, 0, head + 1, n_rot]))),
        ("head_count", lambda: setu(k(rng.choice(["attention.head_count",
                                                  "attention.head_count_kv"])),
                                    rng.choice([0, 1, 3, n_head + 1, 2 * n_head, 2**31]))),
        ("head_count_arr", lambda: put(k(rng.choice(["attention.head_count",
                                                     "attention.head_count_kv",
                                                     "feed_forward_length"])),
                                       T.ARRAY, per_layer(), U)),
        ("ssm", lambda: setu(k("ssm." + rng.choice(["conv_kernel", "state_size", "group_count",
                                                    "time_step_rank", "inner_size"])),
                             _int_choice(rng, 4))),
        ("ssm_inner", lambda: setu(k("ssm.inner_size"),
                                   rng.choice([0, 1, 3, 128, 255, 257, 512, 1024]))),
        ("layers", lambda: setu(k("block_count"), rng.choice([0, 1, n_layer_all - 1,
                                                              n_layer_all + 1, 512, 513, 2**31]))),
        ("nextn", lambda: setu(k("nextn_predict_layers"),
                               rng.choice([0, 2, n_layer_all, n_layer_all + 1, n_layer_all - 1,
                                           2**31 - 1]))),
        ("nextn_and_layers", lambda: setu(k("block_count"), n_layer_all - 1)
         + " " + setu(k("nextn_predict_layers"), rng.choice([0, 1, 2]))),
        ("full_attn_interval", lambda: without(k("attention.recurrent_layers"),
                                               setu(k("full_attention_interval"),
                                                    rng.choice([0, 1, 2, 3, 5, 2**32 - 1])))),
        ("recurrent_layers", lambda: put(k("attention.recurrent_layers"), T.ARRAY,
                                         recurrent_flags(),
                                         rng.choice([T.BOOL, T.BOOL, T.UINT32, T.INT32]))),
        ("experts", lambda: setu(k("expert_count"), rng.choice([0, 1, 2, 4, 1024, 1025, 2**31]))
         + " " + setu(k("expert_used_count"), rng.choice([0, 1, 2, 5, n_expert + 1]))),
        ("expert_used", lambda: setu(k("expert_used_count"),
                                     rng.choice([0, 1, n_expert, n_expert + 1, 2**31]))),
        ("expert_groups", lambda: setu(k("expert_group_count"), rng.choice([0, 1, 2, 3, n_expert]))
         + " " + setu(k("expert_group_used_count"), rng.choice([0, 1, 2, 3]))),
        ("expert_ff", lambda: setu(k(rng.choice(["expert_feed_forward_length",
                                                 "expert_shared_feed_forward_length"])),
                                   _int_choice(rng, 256))),
        ("dims", lambda: setu(k(rng.choice(["embedding_length", "feed_forward_length",
                                            "context_length"])), _int_choice(rng, 256))),
        ("eps", lambda: put(k("attention.layer_norm_rms_epsilon"), T.FLOAT32, rng.choice(FLOATS))),
        ("rope_freq", lambda: put(k(rng.choice(["rope.freq_base", "rope.scaling.factor",
                                                "rope.scaling.attn_factor"])),
                                  T.FLOAT32, rng.choice(FLOATS))),
        ("rope_scaling", lambda: setu(k("rope.scaling.original_context_length"),
                                      rng.choice([0, 1, 2**31]))
         + " " + put(k("rope.scaling.type"), T.STRING, rng.choice([b"yarn", b"linear", b"longrope"]))),
        ("swa", lambda: setu(k(rng.choice(["attention.sliding_window", "attention.key_length_swa",
                                           "attention.value_length_swa",
                                           "rope.dimension_count_swa"])),
                             _int_choice(rng, head))),
        ("pooling", lambda: setu(k("pooling_type"), rng.choice([0, 1, 2, 3, 4, 5, 99, 2**31]))),
        ("causal", lambda: put(k("attention.causal"), T.BOOL, False)),
        ("alignment", lambda: setu("general.alignment", rng.choice([0, 1, 2, 3, 8, 31, 64, 2**16,
                                                                     2**31]))),
    ]
    name, fn = rng.choice(cases)
    detail = fn()
    if rng.random() < 0.25:                       # two at once: consistent-looking combinations
        name2, fn2 = rng.choice(cases)
        detail += " + " + fn2()
        name += "+" + name2
    return f"{name}: {detail}", _reserialize(g)


def _tensor_index(rng: random.Random, g: GGUFStruct) -> int:
    # favour the small tensors (norms, ssm vectors, the MTP head): their shapes are the ones the
    # graph relies on without a check
    if rng.random() < 0.5:
        small = [i for i, t in enumerate(g.tensors) if len(t.dims) == 1 or b"nextn" in t.name]
        if small:
            return rng.choice(small)
    return rng.randrange(len(g.tensors))


def _relaid(g: GGUFStruct, t: TensorInfo, dims: list[int], ggml_type: int) -> bool:
    """Lay the data out again for ``t``'s new shape or type, when the sizes can be computed,
    so that the mutant gets past the GGUF reader's layout check to llama.cpp's loader and
    kernels. False (layout unchanged) otherwise."""
    if nbytes(t.ggml_type, t.dims) is None or nbytes(ggml_type, dims) is None:
        return False
    try:
        relayout(g, {t.name: (dims, ggml_type)})
    except ValueError:
        return False
    return True


def tensor_dims(rng: random.Random, b: Base) -> tuple[str, bytes]:
    g = b.g.copy()
    i = _tensor_index(rng, g)
    t = g.tensors[i]
    old = list(t.dims)
    r = rng.random()
    if r < 0.15 and len(t.dims) >= 2:
        t.dims[0], t.dims[1] = t.dims[1], t.dims[0]
    elif r < 0.3:
        t.dims = t.dims + [rng.choice([1, 2])] if len(t.dims) < 4 else t.dims[:-1]
    elif r < 0.35:
        t.dims = rng.choice([[], [0], [1] * 5, t.dims + [1, 1, 1]])
    else:
        d = rng.randrange(len(t.dims)) if t.dims else 0
        if t.dims:
            t.dims[d] = rng.choice([0, 1, t.dims[d] // 2, t.dims[d] - 1, t.dims[d] + 1,
                                    t.dims[d] * 2, t.dims[d] - 32, 2**31, 2**62, 2**63 + 5])
    relaid = rng.random() < 0.6 and _relaid(g, t, old, t.ggml_type)
    return f"{t.label}: {old} -> {t.dims}{' (data laid out again)' if relaid else ''}", _reserialize(g)


def tensor_type(rng: random.Random, b: Base) -> tuple[str, bytes]:
    g = b.g.copy()
    i = _tensor_index(rng, g)
    t = g.tensors[i]
    old = t.ggml_type
    if rng.random() < 0.5:          # a type with a known size: the data can follow
        t.ggml_type = rng.choice(sorted(BLOCKS))
    else:
        t.ggml_type = rng.choice(GGML_TYPES)
    relaid = rng.random() < 0.7 and _relaid(g, t, list(t.dims), old)
    return (f"{t.label}: type {old} -> {t.ggml_type}{' (data laid out again)' if relaid else ''}",
            _reserialize(g))


def tensor_offset(rng: random.Random, b: Base) -> tuple[str, bytes]:
    g = b.g.copy()
    i = _tensor_index(rng, g)
    t = g.tensors[i]
    old = t.offset
    other = rng.choice(g.tensors).offset
    t.offset = rng.choice([old + 1, old + 16, old - 32, other, 0, len(g.data), len(g.data) - 32,
                           2**63, 2**64 - 32, old + g.alignment])
    return f"{t.label}: offset {old} -> {t.offset}", _reserialize(g)


def tensor_table(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """Tensors renamed, dropped, duplicated, or added under the optional names llama.cpp looks
    for (the MTP head's own embedding / LM head, a layer past the last)."""
    g = b.g.copy()
    i = _tensor_index(rng, g)
    t = g.tensors[i]
    n_layer_all = _int_kv(g, b.key("block_count"), 4)
    last = n_layer_all - 1
    r = rng.random()
    if r < 0.3:
        del g.tensors[i]
        return f"dropped {t.label}", _reserialize(g)
    if r < 0.5:
        other = rng.choice(g.tensors)
        g.tensors[i] = replace(t, name=other.name, dims=list(t.dims))
        return f"{t.label} renamed to {other.label} (duplicate)", _reserialize(g)
    if r < 0.7:
        new = rng.choice([b"blk.99.attn_norm.weight", f"blk.{n_layer_all}.attn_norm.weight".encode(),
                          b"bogus", b"", b"output.weight", b"token_embd.weight",
                          t.name.replace(b"blk.", b"blk.1") if b"blk." in t.name else t.name + b"x"])
        g.tensors[i] = replace(t, name=new, dims=list(t.dims))
        return f"{t.label} renamed to {new!r}", _reserialize(g)
    # add an optional tensor backed by an existing tensor's bytes
    emb = g.tensor("token_embd.weight") or t
    src = rng.choice([emb, t])
    name = rng.choice([f"blk.{last}.nextn.embed_tokens.weight", f"blk.{last}.nextn.shared_head_head.weight",
                       f"blk.{last}.nextn.shared_head_norm.weight", "output.weight",
                       f"blk.{last}.ffn_gate_inp.weight", "rope_freqs.weight",
                       f"blk.0.attn_qkv.bias", f"blk.{last}.attn_q.bias"])
    g.tensors.append(TensorInfo(name.encode(), list(src.dims), src.ggml_type, src.offset))
    return f"added {name} as {src.label}", _reserialize(g)


def mtp_head(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """``nextn_predict_layers`` against the ``blk.N.nextn.*`` tensors."""
    g = b.g.copy()
    key = b.key("nextn_predict_layers")
    n_layer_all = _int_kv(g, b.key("block_count"), 4)
    nextn = [t for t in g.tensors if b".nextn." in t.name]
    r = rng.random()
    if r < 0.35 and nextn:
        victim = rng.choice(nextn)
        g.tensors = [t for t in g.tensors if t.name != victim.name]
        return f"dropped {victim.label}", _reserialize(g)
    if r < 0.55:
        g.drop(key)
        return f"dropped {key}", _reserialize(g)
    if r < 0.75:
        last = f"blk.{n_layer_all - 1}.".encode()
        g.tensors = [t for t in g.tensors if not t.name.startswith(last)]
        return f"dropped every {last.decode()}* tensor", _reserialize(g)
    v = rng.choice([0, 1, 2, 3, n_layer_all])
    g.set(key, T.UINT32, v)
    return f"{key}={v}", _reserialize(g)


JINJA = ["{{", "}}", "{%", "%}", "{% if %}", "{% endif %}", "{% for m in messages %}",
         "{% endfor %}", "{{ messages[0]['content'] }}", "{{ messages[99].content }}", "{{ 1/0 }}",
         "{{ raise_exception('boom') }}", "{% set x = x + 1 %}", "{{ messages | join }}",
         "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{{ 'a' * 100000 }}",
         "{% for i in range(100000) %}{% endfor %}", "{{" + "(" * 2000 + "1" + ")" * 2000 + "}}",
         "{{ [" * 500 + "]" * 500 + " }}", "{% if " + "not " * 3000 + "true %}{% endif %}",
         "{{ messages[0]['content'][::-1] }}", "{{ none.x.y }}", "{{ tools[0] }}",
         "{%- set ns = namespace(a=1) -%}{{ ns.b }}", "\x00", "{# unclosed comment",
         "{{ '%s' % messages }}", "{{ messages[0].content|tojson }}", "{% break %}",
         "{{ add_generation_prompt }}", "{% generation %}", "{{ x | bogus_filter }}",
         "{{" + "(" * 6000 + "1" + ")" * 6000 + "}}", "{{ 1" + " ~ 1" * 50000 + " }}",
         "{% if true %}" * 2000 + "{% endif %}" * 2000]


def chat_template(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """The chat template broken: cut, spliced with Jinja fragments that fail to parse, raise,
    recurse, nest deeply or loop, or replaced by one of them."""
    g = b.g.copy()
    kv = g.kv("tokenizer.chat_template")
    text = kv.value if kv is not None and isinstance(kv.value, bytes) else b""
    r = rng.random()
    fragment = rng.choice(JINJA).encode()
    if r < 0.25 and text:
        cut = rng.randrange(len(text))
        new, detail = text[:cut], f"cut at {cut}"
    elif r < 0.75:
        at = rng.randrange(len(text) + 1)
        new, detail = text[:at] + fragment + text[at:], f"{fragment[:40]!r} at {at}"
    else:
        new, detail = fragment, f"replaced by {fragment[:40]!r}"
    g.set("tokenizer.chat_template", T.STRING, new)
    return detail, _reserialize(g)


# Tensor shapes of qwen35 / qwen35moe in terms of the hyperparameters (ggml order), by the name
# after "blk.N." -- what llama.cpp's load_arch_tensors asks for.
SHAPES: dict[str, tuple[str, ...]] = {
    "token_embd.weight": ("E", "V"), "output.weight": ("E", "V"), "output_norm.weight": ("E",),
    "attn_norm.weight": ("E",), "post_attention_norm.weight": ("E",),
    "ffn_gate.weight": ("E", "F"), "ffn_up.weight": ("E", "F"), "ffn_down.weight": ("F", "E"),
    "attn_qkv.weight": ("E", "QKV"), "attn_gate.weight": ("E", "SR"), "ssm_beta.weight": ("E", "R"),
    "ssm_alpha.weight": ("E", "R"), "ssm_conv1d.weight": ("K", "QKV"), "ssm_dt.bias": ("R",),
    "ssm_a": ("R",), "ssm_norm.weight": ("S",), "ssm_out.weight": ("SR", "E"),
    "attn_q.weight": ("E", "Q2"), "attn_k.weight": ("E", "DKV"), "attn_v.weight": ("E", "DKV"),
    "attn_output.weight": ("DH", "E"), "attn_q_norm.weight": ("D",), "attn_k_norm.weight": ("D",),
    "nextn.eh_proj.weight": ("2E", "E"), "nextn.enorm.weight": ("E",),
    "nextn.hnorm.weight": ("E",), "nextn.shared_head_norm.weight": ("E",),
    "ffn_gate_inp.weight": ("E", "X"), "ffn_up_exps.weight": ("E", "FX", "X"),
    "ffn_gate_exps.weight": ("E", "FX", "X"), "ffn_down_exps.weight": ("FX", "E", "X"),
    "ffn_gate_up_exps.weight": ("E", "2FX", "X"), "ffn_gate_inp_shexp.weight": ("E",),
    "ffn_gate_shexp.weight": ("E", "FS"), "ffn_up_shexp.weight": ("E", "FS"),
    "ffn_down_shexp.weight": ("FS", "E"),
}
# hyperparameter -> its metadata keys
PARAM_KEYS = {"E": ["embedding_length"], "F": ["feed_forward_length"], "H": ["attention.head_count"],
              "KV": ["attention.head_count_kv"], "D": ["attention.key_length", "attention.value_length"],
              "S": ["ssm.state_size"], "G": ["ssm.group_count"], "R": ["ssm.time_step_rank"],
              "K": ["ssm.conv_kernel"], "X": ["expert_count"], "FX": ["expert_feed_forward_length"],
              "FS": ["expert_shared_feed_forward_length"]}


def _dims(shape: tuple[str, ...], p: dict[str, int]) -> list[int]:
    derived = {"QKV": 2 * p["S"] * p["G"] + p["S"] * p["R"], "SR": p["S"] * p["R"],
               "Q2": 2 * p["D"] * p["H"], "DKV": p["D"] * p["KV"], "DH": p["D"] * p["H"],
               "2E": 2 * p["E"], "2FX": 2 * p.get("FX", 0)}
    return [derived[x] if x in derived else p.get(x, 0) for x in shape]


def hyperparameters(g: GGUFStruct, arch: str) -> dict[str, int]:
    """The shape-defining hyperparameters of a qwen35 / qwen35moe file (0 when absent)."""
    p = {name: _int_kv(g, f"{arch}.{keys[0]}", 0) for name, keys in PARAM_KEYS.items()}
    kv = g.kv("tokenizer.ggml.tokens")
    p["V"] = len(kv.value) if kv is not None and isinstance(kv.value, list) else 0
    return p


def reshape(g: GGUFStruct, arch: str, changes: dict[str, int], *, keep_inner: bool = False) -> int:
    """Set hyperparameters (``{"KV": 3}``: head_count_kv = 3) and give every tensor that depends
    on them the shape llama.cpp will ask for, data laid out again (a tensor whose rows are no
    longer whole quantization blocks becomes f16, or f32 for a vector). ``ssm.inner_size``
    follows state_size x time_step_rank unless ``keep_inner``. Returns the tensors reshaped."""
    p = hyperparameters(g, arch)
    p.update(changes)
    for name, value in changes.items():
        for key in PARAM_KEYS[name]:
            g.set(f"{arch}.{key}", T.UINT32, value)
    if not keep_inner:
        g.set(f"{arch}.ssm.inner_size", T.UINT32, p["S"] * p["R"])
    old: dict[bytes, tuple[list[int], int]] = {}
    for t in g.tensors:
        label = t.label
        shape = SHAPES.get(label.split(".", 2)[2] if label.startswith("blk.") else label)
        if shape is None:
            continue
        dims = _dims(shape, p)
        if dims == t.dims:
            continue
        old[t.name] = (list(t.dims), t.ggml_type)
        t.dims = dims
        if dims and dims[0] % BLOCKS.get(t.ggml_type, (1, 1))[0]:
            t.ggml_type = 0 if len(dims) == 1 else 1     # f32 vectors, f16 matrices
    relayout(g, old)
    return len(old)


def coherent(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """One hyperparameter changed together with every tensor shape that depends on it, so that
    llama.cpp's shape checks pass and the file reaches the graph and the kernels: head counts
    that do not divide, head sizes below the RoPE dimensions, DeltaNet heads that do not share
    out, odd sizes."""
    g = b.g.copy()
    p = hyperparameters(g, b.arch)
    name = rng.choice([x for x in PARAM_KEYS if p[x] > 0])
    v = p[name]
    new = rng.choice([1, 2, 3, v - 1, v + 1, 2 * v, max(1, v // 2), v + 32, 3 * v, 5, 6, 7, 8, 16])
    if name == "E":
        new = rng.choice([32, 64, 96, 128, 512, 160])
    new = max(1, new)
    notes = [f"{name}: {v} -> {new}"]
    keep_inner = rng.random() < 0.15
    if keep_inner:
        notes.append("inner_size kept")
    if rng.random() < 0.3:                       # and a second, independent change
        key, value = rng.choice([("rope.dimension_count", rng.choice([2, 4, 8, 16, 64, 128])),
                                 ("attention.head_count_kv", rng.choice([1, 2, 3, 4])),
                                 ("nextn_predict_layers", rng.choice([0, 1]))])
        g.set(b.key(key), T.UINT32, value)
        notes.append(f"{key}={value}")
    n = reshape(g, b.arch, {name: new}, keep_inner=keep_inner)
    return "; ".join(notes) + f" ({n} tensors reshaped)", _reserialize(g)


def stacked(rng: random.Random, b: Base) -> tuple[str, bytes]:
    """Two or three structure mutations applied in a row (each on the previous result)."""
    details = []
    current = b
    data = b.raw
    for _ in range(rng.choice([2, 2, 3])):
        name, fn = rng.choice(_STRUCTURED)
        try:
            detail, data = fn(rng, current)
        except (ValueError, IndexError, KeyError, struct.error):
            break
        details.append(f"{name}({detail})")
        try:
            current = Base(data)        # the next mutation edits this one's structure
        except (ValueError, IndexError, KeyError, OverflowError, MemoryError, struct.error):
            break                       # no longer parseable: it is the mutant
    return "; ".join(details), data


# name -> (weight, function). Weight 0: only with --strategy NAME (see OPT_IN).
STRATEGIES: dict[str, tuple[float, Callable[[random.Random, Base], tuple[str, bytes]]]] = {
    "byte_flip": (10, byte_flip),
    "overwrite_int": (10, overwrite_int),
    "truncate": (4, truncate),
    "splice": (5, splice),
    "data_flip": (3, data_flip),
    "kv_wrong_type": (8, kv_wrong_type),
    "kv_value": (8, kv_value),
    "kv_drop_dup": (4, kv_drop_or_duplicate),
    "kv_strings": (4, kv_strings),
    "array_length": (5, array_length),
    "array_elements": (5, array_elements),
    "vocab": (8, vocab),
    "special_tokens": (4, special_tokens),
    "hparams": (14, hparams),
    "tensor_dims": (6, tensor_dims),
    "tensor_type": (6, tensor_type),
    "tensor_offset": (4, tensor_offset),
    "tensor_table": (5, tensor_table),
    "mtp_head": (4, mtp_head),
    "coherent": (10, coherent),
    "chat_template": (0, chat_template),
    "stacked": (5, stacked),
}
_STRUCTURED = [(n, f) for n, (w, f) in STRATEGIES.items()
               if n in ("kv_wrong_type", "kv_value", "array_length", "array_elements", "vocab",
                        "special_tokens", "hparams", "tensor_dims", "tensor_type", "mtp_head",
                        "tensor_table", "coherent")]


# Opt-in strategies: a class of abort they find is known and not fixed (README "Reliability"):
# chat_template's recursive macro overflows the stack in llama.cpp's Jinja engine, which has no
# recursion limit (a template's nesting depth is checked; its recursion cannot be, statically).
OPT_IN = [n for n, (w, _) in STRATEGIES.items() if w == 0]


def strategy_names() -> list[str]:
    return list(STRATEGIES)


def mutate(base: Base, seed: int, only: str | None = None) -> Mutant:
    """The mutant of ``base`` for ``seed`` (strategy drawn by weight, or ``only``)."""
    rng = random.Random(seed)
    names = list(STRATEGIES)
    name = rng.choices(names, weights=[STRATEGIES[n][0] for n in names])[0]
    if only is not None:        # the draw above is made anyway: the rest of the stream is the same
        name = only
    detail, data = STRATEGIES[name][1](rng, base)
    return Mutant(seed, name, detail, data)
