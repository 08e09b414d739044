"""Test helper: copy a GGUF with metadata keys dropped/changed and tensors dropped, to make the
broken files that `llama-mtp inspect` must reject (written with the `gguf` package)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gguf


def rewrite(src: Path, dst: Path, *, drop_keys: tuple[str, ...] = (),
            set_uint32: dict[str, int] | None = None,
            drop_tensor: Callable[[str], bool] = lambda name: False) -> Path:
    reader = gguf.GGUFReader(str(src))
    arch = reader.get_field("general.architecture").contents()
    writer = gguf.GGUFWriter(str(dst), arch)
    changes = dict(set_uint32 or {})
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF.") or field.name in drop_keys:
            continue
        if field.name in changes:
            writer.add_uint32(field.name, changes.pop(field.name))
            continue
        kind = field.types[0]
        sub: Any = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for key, value in changes.items():
        writer.add_uint32(key, value)
    kept = [t for t in reader.tensors if not drop_tensor(t.name)]
    for t in kept:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in kept:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return dst


def split(src: Path, first: Path, max_tensors: int) -> list[Path]:
    """Write ``src`` as a split model (llama.cpp's gguf-split layout: ``<first stem>-00001-of-0000N.gguf``
    ..., ``split.*`` keys, at most ``max_tensors`` tensors per part) next to ``first``; returns the parts."""
    reader = gguf.GGUFReader(str(src))
    arch = reader.get_field("general.architecture").contents()
    writer = gguf.GGUFWriter(str(first), arch, split_max_tensors=max_tensors)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub: Any = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    parts = writer.format_shard_names(first)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return parts
