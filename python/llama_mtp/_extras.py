"""Optional extras: check that a feature's packages are installed before importing them.

The base install (``pip install llama-mtp``) carries only what inference needs. Features with
heavier dependencies live in extras (``llama-mtp[synthetic]``); importing one without its
packages raises :class:`~llama_mtp.errors.MissingExtraError` with the command that fixes it,
instead of a bare ``ModuleNotFoundError`` from deep inside the feature.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Sequence

from .errors import MissingExtraError

_IMPORT_NAME = "llama_mtp"


def distribution_name() -> str:
    """The installed distribution that provides ``llama_mtp`` (``llama-mtp``, or a CUDA
    variant such as ``llama-mtp-cu13``); ``llama-mtp`` when it cannot be told."""
    try:
        names = importlib.metadata.packages_distributions().get(_IMPORT_NAME, [])
    except Exception:  # broken metadata of some other package must not hide the real error
        names = []
    return names[0] if names else "llama-mtp"


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The top-level modules of ``modules`` that cannot be imported (found without importing)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_extra(extra: str, modules: Sequence[str], feature: str) -> None:
    """Raise :class:`MissingExtraError` when any of ``modules`` (the extra's top-level import
    names) is not installed. ``feature`` says in words what needs them."""
    missing = missing_modules(modules)
    if missing:
        raise MissingExtraError(
            f"{feature} needs the optional '{extra}' dependencies, which are not installed "
            f"(missing: {', '.join(missing)}). Install them with: "
            f"pip install '{distribution_name()}[{extra}]'  (from a checkout: "
            f"pip install -e '.[{extra}]')."
        )
