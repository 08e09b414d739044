"""TEMPORARY: greedy generation and MTP acceptance through llama.cpp's own example binaries.

Used by the synthetic-model tests until ``Model.generate`` / the Speculator land; to be
switched over to the Python API then. The binaries come from a separate build of our tree::

    cmake -S . -B build/tools -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_MTP_REFERENCE_TOOLS=ON \\
        -DPython_EXECUTABLE=$PWD/.venv/bin/python -Dpybind11_DIR=$(python -m pybind11 --cmakedir)
    cmake --build build/tools --target llama-speculative-simple llama-completion -j2

(``$LLAMA_MTP_TOOLS_DIR`` overrides ``build/tools/bin``). Tests that need them skip when absent.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tools_dir() -> Path:
    return Path(os.environ.get("LLAMA_MTP_TOOLS_DIR", ROOT / "build" / "tools" / "bin"))


def tool(name: str) -> Path:
    path = tools_dir() / name
    if not path.exists():
        pytest.skip(f"reference tool {name} not built (see tests/_reference_tools.py)")
    return path


@dataclass
class SpecRun:
    text: str
    n_drafted: int
    n_accept: int

    @property
    def acceptance(self) -> float:
        return self.n_accept / self.n_drafted if self.n_drafted else 0.0


def _prompt_file(tmp: Path, prompt: str) -> Path:
    p = tmp / "prompt.txt"
    p.write_text(prompt, encoding="utf-8")
    return p


def speculative(model: Path, prompt: str, n_predict: int, n_max: int, tmp: Path,
                ctx: int = 4096) -> SpecRun:
    """Greedy MTP speculative decoding with ``llama-speculative-simple`` (1 thread)."""
    cmd = [str(tool("llama-speculative-simple")), "-m", str(model), "-f",
           str(_prompt_file(tmp, prompt)), "--spec-type", "draft-mtp", "--spec-draft-n-max",
           str(n_max), "-n", str(n_predict), "--temp", "0", "--top-k", "1", "--seed", "1",
           "-t", "1", "-c", str(ctx), "-b", "2048", "-ub", "512"]
    res = subprocess.run(cmd, capture_output=True, timeout=900)
    err = res.stderr.decode("utf-8", "replace")
    if res.returncode != 0:
        raise RuntimeError(f"llama-speculative-simple failed ({res.returncode}):\n{err[-3000:]}")
    drafted = int(re.search(r"n_drafted\s*=\s*(\d+)", err).group(1))  # type: ignore[union-attr]
    accepted = int(re.search(r"n_accept\s*=\s*(\d+)", err).group(1))  # type: ignore[union-attr]
    out = res.stdout.decode("utf-8", "replace")
    return SpecRun(text=_after_prompt(out, prompt), n_drafted=drafted, n_accept=accepted)


def _after_prompt(out: str, prompt: str) -> str:
    """The generated text: the output after the echoed prompt (when the echo differs from the
    prompt text, e.g. invalid UTF-8, the whole output)."""
    k = out.find(prompt)
    gen = out if k < 0 else out[k + len(prompt):]
    return gen.rstrip("\n")     # the tools print blank lines after the text (and so lose a
    #                             generated trailing newline: fine for these tests)


def greedy_text(model: Path, prompt: str, n_predict: int, tmp: Path, ctx: int = 4096) -> str:
    """Plain greedy completion with ``llama-completion`` (1 thread): the generated text."""
    cmd = [str(tool("llama-completion")), "-m", str(model), "-f", str(_prompt_file(tmp, prompt)),
           "-n", str(n_predict), "--temp", "0", "--top-k", "1", "-t", "1", "-c", str(ctx),
           "-no-cnv", "--no-warmup", "-b", "2048", "-ub", "512", "--ignore-eos"]
    res = subprocess.run(cmd, capture_output=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"llama-completion failed ({res.returncode}):\n"
                           f"{res.stderr.decode('utf-8', 'replace')[-3000:]}")
    return _after_prompt(res.stdout.decode("utf-8", "replace"), prompt)
