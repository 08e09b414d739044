"""Write a synthetic model BEFORE the compiled extension exists (benches/gpu_bench.sh).

    python benches/gpu_model.py OUT.gguf --preset qwen3.6-27b --quant Q4_K_M --agreement 0.8
    python benches/gpu_model.py --export-plan --preset qwen3.6-27b --quant Q4_K_M   # needs _core
    python benches/gpu_model.py --check-plan --preset qwen3.6-27b --quant Q4_K_M    # needs _core

``llama_mtp.synthetic.build`` is pure Python except for one step: the quantization plan (which
ggml type each tensor gets), found by quantizing a small probe model with llama.cpp through the
extension. On a fresh GPU machine the extension exists only after the CUDA build (~4-5 min), and
writing the 16 GB ``qwen3.6-27b`` model takes minutes too: gpu_bench.sh runs both at once. So
this script imports ``llama_mtp.synthetic`` under a stub parent package (the package's
``__init__`` would load ``_core``) and hands ``build`` the plan exported here, with the same
pinned llama.cpp, into ``benches/data/plan-<preset>-<quant>.json``. The bytes written are those
of ``synthetic.build`` (``--check-plan`` confirms the stored plan is still llama.cpp's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def _import_synthetic(with_core: bool) -> Any:
    """``llama_mtp.synthetic``; without ``with_core`` the package ``__init__`` (and so the
    compiled ``_core``) is never imported."""
    if not with_core and "llama_mtp" not in sys.modules:
        pkg = types.ModuleType("llama_mtp")
        pkg.__path__ = [str(ROOT / "python" / "llama_mtp")]
        sys.modules["llama_mtp"] = pkg
    import llama_mtp.synthetic as synthetic
    return synthetic


def plan_file(preset: str, quant: str) -> Path:
    return DATA / f"plan-{preset}-{quant.upper()}.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", nargs="?")
    ap.add_argument("--preset", default="qwen3.6-27b")
    ap.add_argument("--quant", default="Q4_K_M")
    ap.add_argument("--agreement", type=float, default=0.8)
    ap.add_argument("--export-plan", action="store_true")
    ap.add_argument("--check-plan", action="store_true")
    a = ap.parse_args(argv)
    q = a.quant.upper()
    if a.export_plan or a.check_plan:
        synthetic = _import_synthetic(with_core=True)
        plan = synthetic.quant_plan(synthetic.get_preset(a.preset), q)
        if a.export_plan:
            DATA.mkdir(parents=True, exist_ok=True)
            plan_file(a.preset, q).write_text(json.dumps(plan, indent=0, sort_keys=True) + "\n")
            print(plan_file(a.preset, q))
            return 0
        stored = json.loads(plan_file(a.preset, q).read_text())
        same = stored == plan
        print(f"{plan_file(a.preset, q).name} matches llama.cpp's quantizer: {same}")
        return 0 if same else 1
    if not a.output:
        ap.error("OUTPUT is required")
    synthetic = _import_synthetic(with_core=False)
    import llama_mtp.synthetic.build as build_mod
    pf = plan_file(a.preset, q)
    if pf.exists():
        fixed_plan: dict[str, str] = json.loads(pf.read_text())

        def stored_plan(shape: Any, quant: str, *, threads: int | None = None) -> dict[str, str]:
            return fixed_plan
        build_mod.quant_plan = stored_plan  # build() looks the plan up through this name
    t0 = time.perf_counter()
    out = synthetic.build(a.output, preset=a.preset, quant=q, mtp_agreement=a.agreement,
                          progress=False)
    dt = time.perf_counter() - t0
    size = os.path.getsize(out)
    print(f"wrote {out} ({size / 1e9:.2f} GB) in {dt:.1f} s ({size / dt / 1e6:.0f} MB/s)",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
