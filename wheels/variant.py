#!/usr/bin/env python3
"""Turn this checkout into the source of a CUDA distribution, e.g. ``llama-mtp-cu13``.

The CPU package and each CUDA package are built from the same source; they differ only in
their distribution name and dependencies:

* ``llama-mtp``       -- CPU (the default ``pip install .``), depends on no NVIDIA package;
* ``llama-mtp-cu13``  -- CUDA 13; depends on ``nvidia-cuda-runtime`` and ``nvidia-cublas``
  (``>=13.0,<14``), which ``llama_mtp._cuda_runtime`` loads at import.

``python wheels/variant.py cu13`` rewrites ``[project] name`` (and the extras' references to
the project itself, ``llama-mtp[synthetic]``) and appends the runtime requirements to
``[project] dependencies`` in pyproject.toml, nothing else. CMakeLists.txt
reads the name (scikit-build-core passes it as ``SKBUILD_PROJECT_NAME``) and builds the CUDA
backend for a ``-cu<NN>`` name, refusing any other CUDA major. Because the stamp lives in
pyproject.toml, the sdist of ``llama-mtp-cu13`` is a CUDA sdist too: if pip ever falls back to
building it, it builds CUDA or fails -- it never quietly installs a CPU build under the CUDA
name (llama-cpp-python #1872).

Run it in a throw-away checkout (CI), never in a working tree you commit from.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BASE_NAME = "llama-mtp"
VARIANTS = {"cu13": 13}


def _cuda_runtime_module() -> ModuleType:
    """Load python/llama_mtp/_cuda_runtime.py alone (the package needs the compiled _core)."""
    path = ROOT / "python" / "llama_mtp" / "_cuda_runtime.py"
    spec = importlib.util.spec_from_file_location("_llama_mtp_cuda_runtime", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # a no-op loader run: the source tree has no build marker
    return module


def requirements(variant: str) -> list[str]:
    """The pip requirements a CUDA variant adds (the ones its import-time loader looks for)."""
    reqs: list[str] = _cuda_runtime_module().requirements(VARIANTS[variant])
    return reqs


def renamed_self_reference(requirement: str, name: str) -> str:
    """``requirement`` with the project's own name (``llama-mtp[extra]``) replaced by ``name``."""
    return re.sub(r"^llama-mtp\[", f"{name}[", requirement)


def stamp(text: str, variant: str) -> str:
    """Return pyproject.toml ``text`` rewritten for ``variant``."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    project = tomllib.loads(text)["project"]
    if project["name"] != BASE_NAME:
        raise SystemExit(f"pyproject.toml is already stamped ({project['name']!r})")
    name = f"{BASE_NAME}-{variant}"
    new, n = re.subn(r'(?m)^name\s*=\s*"llama-mtp"\s*$', f'name = "{name}"', text, count=1)
    if n != 1:
        raise SystemExit("cannot find `name = \"llama-mtp\"` in pyproject.toml")
    # Extras that pull other extras of this project (`test = [..., "llama-mtp[synthetic]"]`)
    # must name the stamped project, or pip would install the CPU package next to the CUDA one.
    new = re.sub(r'"llama-mtp\[', f'"{name}[', new)
    extra = requirements(variant)
    m = re.search(r"(?ms)^dependencies\s*=\s*\[(.*?)\]", new)
    if m is None:
        raise SystemExit("cannot find `dependencies = [...]` in pyproject.toml")
    body = m.group(1).rstrip()
    sep = "" if not body.strip() or body.endswith(",") else ", "
    added = ", ".join(f'"{r}"' for r in extra)
    new = new[: m.start(1)] + body + sep + added + new[m.end(1):]
    check = tomllib.loads(new)["project"]
    extras = {key: [renamed_self_reference(r, name) for r in reqs]
              for key, reqs in project.get("optional-dependencies", {}).items()}
    if (check["name"] != name or check["dependencies"] != project["dependencies"] + extra
            or check.get("optional-dependencies", {}) != extras):
        raise SystemExit("stamping pyproject.toml went wrong; refusing to write it")
    return new


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variant", choices=sorted(VARIANTS))
    ap.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = ap.parse_args(argv)
    args.pyproject.write_text(stamp(args.pyproject.read_text(encoding="utf-8"), args.variant),
                              encoding="utf-8")
    project = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["project"]
    print(f"{args.pyproject}: name={project['name']} dependencies={project['dependencies']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
