"""A GGUF file as editable structure (header, metadata, tensor table, data) and back to bytes.

The fuzzer's structure-aware mutations edit this structure; the raw ones edit bytes, and use the
spans recorded here to aim at a region (metadata, tensor table, data). Written against the GGUF
v2/v3 layout (ggml/src/gguf.cpp): nothing is validated beyond what is needed to parse a good
file, since only the unmutated base file is ever parsed.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, replace
from typing import Union

__all__ = ["GGUFType", "KV", "TensorInfo", "GGUFStruct", "parse", "serialize", "Scalar", "Value",
           "BLOCKS", "nbytes", "relayout"]


class GGUFType:
    """GGUF value type codes (enum gguf_type)."""
    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, \
        FLOAT64 = range(13)
    INTEGER = (0, 1, 2, 3, 4, 5, 10, 11)
    FLOAT = (6, 12)
    FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
    NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
             8: "str", 9: "arr", 10: "u64", 11: "i64", 12: "f64"}


# ggml type -> (elements per block, bytes per block), for the types the synthetic models use
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
          9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
          14: (256, 210), 15: (256, 292), 30: (1, 2)}


def nbytes(ggml_type: int, dims: list[int]) -> int | None:
    """Bytes of a tensor (None for a type not in BLOCKS, or rows that are not whole blocks)."""
    if ggml_type not in BLOCKS or not dims:
        return None
    block, size = BLOCKS[ggml_type]
    if dims[0] % block:
        return None
    n = 1
    for d in dims[1:]:
        n *= d
    return dims[0] // block * size * n


Scalar = Union[int, float, bool, bytes]
Value = Union[Scalar, list[Scalar]]


@dataclass
class KV:
    """One metadata entry. Strings are kept as bytes (a mutant may hold invalid UTF-8)."""
    key: bytes
    vtype: int
    value: Value
    subtype: int | None = None     # element type of an array

    @property
    def name(self) -> str:
        return self.key.decode("utf-8", "replace")


@dataclass
class TensorInfo:
    name: bytes
    dims: list[int]                # ggml order: ne0 first
    ggml_type: int
    offset: int                    # relative to the data section

    @property
    def label(self) -> str:
        return self.name.decode("utf-8", "replace")


@dataclass
class GGUFStruct:
    version: int
    kvs: list[KV]
    tensors: list[TensorInfo]
    data: bytes                    # the data section (from data_offset to the end)
    alignment: int = 32
    # byte spans in the original file, for the raw mutations
    kv_spans: list[tuple[int, int]] = field(default_factory=list)
    tensor_spans: list[tuple[int, int]] = field(default_factory=list)
    data_offset: int = 0

    def kv(self, key: str) -> KV | None:
        k = key.encode()
        for kv in self.kvs:
            if kv.key == k:
                return kv
        return None

    def index(self, key: str) -> int:
        k = key.encode()
        for i, kv in enumerate(self.kvs):
            if kv.key == k:
                return i
        return -1

    def set(self, key: str, vtype: int, value: Value, subtype: int | None = None) -> None:
        """Set ``key`` (replaced in place, or appended)."""
        kv = KV(key.encode(), vtype, value, subtype)
        i = self.index(key)
        if i < 0:
            self.kvs.append(kv)
        else:
            self.kvs[i] = kv

    def drop(self, key: str) -> None:
        i = self.index(key)
        if i >= 0:
            del self.kvs[i]

    def tensor(self, name: str) -> TensorInfo | None:
        n = name.encode()
        for t in self.tensors:
            if t.name == n:
                return t
        return None

    @property
    def arch(self) -> str:
        kv = self.kv("general.architecture")
        return kv.value.decode() if kv is not None and isinstance(kv.value, bytes) else ""

    def copy(self) -> GGUFStruct:
        """A copy whose lists can be edited without touching this one (values are copied on
        write by the mutations: replace a KV, never edit its list in place)."""
        return replace(self, kvs=list(self.kvs), tensors=[replace(t, dims=list(t.dims))
                                                           for t in self.tensors])


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> int | float | bool:
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v  # type: ignore[no-any-return]

    def u32(self) -> int:
        return int(self.take("<I"))

    def u64(self) -> int:
        return int(self.take("<Q"))

    def string(self) -> bytes:
        n = self.u64()
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s

    def scalar(self, t: int) -> Scalar:
        if t == GGUFType.STRING:
            return self.string()
        return self.take(GGUFType.FMT[t])


def parse(buf: bytes) -> GGUFStruct:
    """Parse a well-formed GGUF file."""
    r = _Reader(buf)
    if buf[:4] != b"GGUF":
        raise ValueError("not a GGUF file")
    r.pos = 4
    version = r.u32()
    n_tensors, n_kv = r.u64(), r.u64()
    kvs: list[KV] = []
    kv_spans = []
    alignment = 32
    for _ in range(n_kv):
        start = r.pos
        key = r.string()
        t = r.u32()
        if t == GGUFType.ARRAY:
            sub = r.u32()
            n = r.u64()
            if sub in GGUFType.FMT:           # numeric arrays in one unpack
                fmt = GGUFType.FMT[sub]
                size = struct.calcsize(fmt)
                items: list[Scalar] = list(struct.unpack_from(f"<{n}{fmt[1]}", buf, r.pos))
                r.pos += n * size
            else:
                items = [r.scalar(sub) for _ in range(n)]
            kvs.append(KV(key, t, items, sub))
        else:
            value = r.scalar(t)
            kvs.append(KV(key, t, value))
            if key == b"general.alignment" and isinstance(value, int):
                alignment = value
        kv_spans.append((start, r.pos))
    tensors = []
    tensor_spans = []
    for _ in range(n_tensors):
        start = r.pos
        name = r.string()
        n_dims = r.u32()
        dims = [r.u64() for _ in range(n_dims)]
        ggml_type = r.u32()
        offset = r.u64()
        tensors.append(TensorInfo(name, dims, ggml_type, offset))
        tensor_spans.append((start, r.pos))
    data_offset = _pad(r.pos, alignment)
    return GGUFStruct(version, kvs, tensors, buf[data_offset:], alignment, kv_spans, tensor_spans,
                      data_offset)


def _pad(n: int, alignment: int) -> int:
    return n + (-n % alignment) if alignment > 0 else n


def _pack_scalar(t: int, v: Scalar) -> bytes:
    if t == GGUFType.STRING:
        b = v if isinstance(v, bytes) else str(v).encode()
        return struct.pack("<Q", len(b)) + b
    fmt = GGUFType.FMT[t]
    if fmt[1] in "fd":
        f = float(v) if not isinstance(v, bytes) else 0.0
        try:
            return struct.pack(fmt, f)
        except OverflowError:                   # beyond f32: what a converter would write
            return struct.pack(fmt, math.copysign(math.inf, f))
    if fmt[1] == "?":
        return struct.pack(fmt, bool(v))
    bits = struct.calcsize(fmt) * 8
    iv = int(v) if not isinstance(v, bytes) else 0
    # wrap into the type's range: a mutation may ask for 2**40 in a u32
    iv &= (1 << bits) - 1
    if fmt[1].islower() and iv >= 1 << (bits - 1):
        iv -= 1 << bits
    return struct.pack(fmt, iv)


def serialize(g: GGUFStruct, *, alignment: int | None = None) -> bytes:
    """The bytes of ``g``: the data section follows the tensor table, padded to the alignment
    the file declares (``general.alignment``; the original one when that is unusable, so that
    a mutated alignment value is what llama.cpp sees, not a broken writer)."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", g.version, len(g.tensors), len(g.kvs))
    for kv in g.kvs:
        out += struct.pack("<Q", len(kv.key)) + kv.key + struct.pack("<I", kv.vtype)
        if kv.vtype == GGUFType.ARRAY:
            sub = kv.subtype if kv.subtype is not None else GGUFType.UINT32
            items = kv.value if isinstance(kv.value, list) else [kv.value]
            out += struct.pack("<IQ", sub, len(items))
            if sub in GGUFType.FMT and sub not in GGUFType.FLOAT and sub != GGUFType.BOOL \
                    and all(isinstance(x, int) for x in items):
                try:
                    out += struct.pack(f"<{len(items)}{GGUFType.FMT[sub][1]}", *items)
                    continue
                except struct.error:
                    pass
            for x in items:
                out += _pack_scalar(sub, x)
        elif kv.vtype in GGUFType.FMT or kv.vtype == GGUFType.STRING:
            v = kv.value[0] if isinstance(kv.value, list) and kv.value else kv.value
            out += _pack_scalar(kv.vtype, v if not isinstance(v, list) else 0)
        # any other type code: no value bytes (what a corrupt type field would look like)
    for t in g.tensors:
        out += struct.pack("<Q", len(t.name)) + t.name + struct.pack("<I", len(t.dims))
        out += b"".join(struct.pack("<Q", d & (2**64 - 1)) for d in t.dims)
        out += struct.pack("<IQ", t.ggml_type & 0xFFFFFFFF, t.offset & (2**64 - 1))
    align = alignment if alignment is not None else g.alignment
    declared = g.kv("general.alignment")
    if declared is not None and isinstance(declared.value, int) and 0 < declared.value <= 1 << 16:
        align = declared.value
    out += b"\x00" * (_pad(len(out), align) - len(out))
    out += g.data
    return bytes(out)


MAX_TENSOR_BYTES = 1 << 28   # relayout refuses to write more per tensor (a mutant, not a model)


def relayout(g: GGUFStruct, old: dict[bytes, tuple[list[int], int]]) -> None:
    """Lay the data section out again after tensors changed shape or type: each tensor gets
    its old bytes (its shape and type before the change, from ``old``; unchanged tensors need no
    entry) cut or repeated to its new size, at an offset aligned as the file says."""
    data = bytearray()
    for t in sorted(g.tensors, key=lambda t: t.offset):
        dims, ggml_type = old.get(t.name, (t.dims, t.ggml_type))
        size_old = nbytes(ggml_type, dims) or 0
        size_new = nbytes(t.ggml_type, t.dims)
        if size_new is None:
            raise ValueError(f"cannot size {t.label}: type {t.ggml_type}, dims {t.dims}")
        if size_new > MAX_TENSOR_BYTES:
            raise ValueError(f"{t.label} would take {size_new:,} bytes")
        chunk = g.data[t.offset:t.offset + size_old] or b"\0"
        chunk = (chunk * (size_new // len(chunk) + 1))[:size_new]
        t.offset = len(data)
        data += chunk
        data += b"\0" * (-len(data) % g.alignment)
    g.data = bytes(data)
