"""benches/gpu_bench.sh without a GPU: ``--dry-run`` prints the plan and the commands for every
model shape (dense 27B, MoE 35B-A3B, and the CPU smoke test's tiny ones), and the quantization
plans gpu_model.py writes with (stored, because on a fresh GPU machine the model is written
before the extension is compiled) are still llama.cpp's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from llama_mtp.synthetic import get_preset, quant_plan

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benches" / "gpu_bench.sh"


@pytest.mark.parametrize("args,preset,mode", [
    ((), "qwen3.6-27b", "gpu"), (("--moe",), "qwen3.6-35b-a3b", "gpu"),
    (("--cpu-smoke",), "tiny", "cpu"), (("--cpu-smoke", "--moe"), "tiny-moe", "cpu"),
    (("--preset", "bench-moe", "--cpu-smoke"), "bench-moe", "cpu")])
def test_dry_run(tmp_path: Path, args: tuple[str, ...], preset: str, mode: str) -> None:
    env = dict(os.environ, OUT=str(tmp_path / "out"), LLAMA_MTP_BENCH_CACHE=str(tmp_path / "cache"),
               CUDA_ARCH="90")
    res = subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"mode {mode}, preset {preset}," in out
    model = f"{tmp_path}/cache/models/{preset}-Q4_K_M-a0.8.gguf"
    assert f"benches/gpu_model.py {model} --preset {preset} --quant Q4_K_M --agreement 0.8" in out
    assert f"benches/gpu_bench.py --model {model}" in out
    assert f'"preset": "{preset}"' in out
    assert ("-DLLAMA_MTP_CUDA=ON" in out) == (mode == "gpu")
    assert not (tmp_path / "out").exists()          # a dry run writes nothing


def test_unknown_argument() -> None:
    res = subprocess.run(["bash", str(SCRIPT), "--nope"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "unknown argument" in res.stderr


@pytest.mark.parametrize("preset", ["qwen3.6-27b", "qwen3.6-35b-a3b", "tiny", "tiny-moe"])
def test_stored_plans_are_llama_cpps(preset: str) -> None:
    """The plans benches/data holds for the GPU script's presets (re-export with
    ``python benches/gpu_model.py --export-plan --preset P``)."""
    stored = json.loads((ROOT / "benches" / "data" / f"plan-{preset}-Q4_K_M.json").read_text())
    assert stored == quant_plan(get_preset(preset), "Q4_K_M")
