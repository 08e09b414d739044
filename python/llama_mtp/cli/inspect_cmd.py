"""``llama-mtp inspect``: the card's loadability check, without loading weights."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ModelLoadError
from ..gguf_info import GGUFReport, inspect_gguf


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("inspect", help="check that a GGUF is loadable and show what it holds",
                       description="Validates the GGUF (magic, version, counts, every tensor inside the "
                                   "file), the architecture and hyper-parameters (vocabulary-only load), "
                                   "and the MTP head. Exit status 0 only when the file is loadable.")
    p.add_argument("model", help="GGUF file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def check(path: str) -> tuple[GGUFReport | None, list[str]]:
    """The report (None if unreadable) and the reasons the file is not loadable (empty: loadable)."""
    try:
        report = inspect_gguf(path)
    except (ModelLoadError, FileNotFoundError) as exc:
        return None, [str(exc)]
    return report, report.check_loadable()


def summary(report: GGUFReport, problems: list[str]) -> dict[str, Any]:
    """JSON-ready summary."""
    mtp = report.mtp
    return {
        "path": report.path, "parts": report.parts, "loadable": not problems, "problems": problems,
        "gguf_version": report.version, "file_size": report.file_size,
        "architecture": report.arch, "name": report.metadata.get("general.name"),
        "n_params": report.n_params, "n_tensors": len(report.tensors),
        "quantization_mix": report.quantization_mix, "file_type": report.metadata.get("general.file_type"),
        "context_length": report.context_length, "block_count": report.block_count,
        "mtp": {"present": mtp.present, "complete": mtp.complete,
                "nextn_predict_layers": mtp.declared_layers, "mtp_blocks": mtp.mtp_blocks,
                "missing_tensors": mtp.missing_tensors},
        "chat_template": report.has_chat_template,
        "tokenizer": report.metadata.get("tokenizer.ggml.model"),
        "tokenizer_pre": report.metadata.get("tokenizer.ggml.pre"),
        "moe": moe_summary(report),
    }


def moe_summary(report: GGUFReport) -> dict[str, Any] | None:
    """The mixture-of-experts part of the summary (``None`` for a dense model)."""
    moe = report.moe
    if moe is None:
        return None
    return {"expert_count": moe.expert_count, "expert_used_count": moe.expert_used_count,
            "expert_feed_forward_length": moe.expert_feed_forward_length,
            "shared_feed_forward_length": moe.shared_feed_forward_length,
            "expert_tensors": moe.expert_tensors, "expert_params": moe.expert_params,
            "active_params": moe.active_params, "per_token": moe.per_token,
            "expert_quantization_mix": moe.expert_quantization_mix,
            "other_quantization_mix": moe.other_quantization_mix}


def run(a: argparse.Namespace) -> int:
    """Entry point of ``llama-mtp inspect``."""
    report, problems = check(a.model)
    if report is None:
        if a.json:
            print(json.dumps({"path": a.model, "loadable": False, "problems": problems}))
        else:
            print(f"{a.model}: NOT LOADABLE\n  {problems[0]}")
        return 1
    info = summary(report, problems)
    if a.json:
        print(json.dumps(info, ensure_ascii=False))
        return 0 if not problems else 1
    gib = report.file_size / 2**30
    mix = ", ".join(f"{k}: {v}" for k, v in report.quantization_mix.items())
    mtp = report.mtp
    mtp_line = ("complete" if mtp.complete else "INCOMPLETE" if mtp.present else "absent")
    print(f"file          : {report.path} ({report.file_size} bytes, {gib:.2f} GiB)")
    if len(report.parts) > 1:
        print(f"split         : {len(report.parts)} parts, all present")
    print(f"GGUF          : version {report.version}, {len(report.tensors)} tensors, "
          f"{len(report.metadata)} metadata keys")
    print(f"architecture  : {report.arch}   parameters: {report.n_params / 1e9:.3f} B")
    print(f"context length: {report.context_length}   blocks: {report.block_count}")
    print(f"quantization  : {mix}")
    moe = report.moe
    if moe is not None:
        def fmt(m: dict[str, int]) -> str:
            return ", ".join(f"{k}: {v}" for k, v in m.items())
        print(f"experts       : {moe.expert_count} routed, {moe.expert_used_count} per token, "
              f"width {moe.expert_feed_forward_length}; shared expert width "
              f"{moe.shared_feed_forward_length}; {moe.expert_params / 1e9:.3f} B weights in "
              f"{moe.expert_tensors} expert tensors")
        print(f"per token     : {moe.active_params / 1e9:.3f} B weights read "
              f"({100 * moe.active_params / max(1, report.n_params):.1f} % of the file)")
        print(f"quantization  : experts {fmt(moe.expert_quantization_mix)}; "
              f"other tensors {fmt(moe.other_quantization_mix)}")
    print(f"MTP           : {mtp_line} (nextn_predict_layers={mtp.declared_layers}, "
          f"nextn blocks={mtp.mtp_blocks})")
    print(f"chat template : {'yes' if report.has_chat_template else 'no'}")
    if problems:
        print("NOT LOADABLE:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("loadable      : yes")
    return 0
