"""GGUF models from the Hugging Face Hub: :meth:`Model.from_pretrained` and ``llama-mtp run -hf``.

Through ``huggingface_hub`` (``pip install "llama-mtp[hub]"``), so files land in its cache
(``~/.cache/huggingface/hub``, or ``cache_dir`` / ``HF_HUB_CACHE``), a token comes from
``HF_TOKEN`` / ``hf auth login``, downloads show its progress bars, and ``HF_HUB_OFFLINE=1``
works from the cache alone.

* ``filename`` is a file name or a glob matched against the repository's files, case-insensitive
  (``"*Q4_K_M*.gguf"``, ``"Q8_0/*.gguf"``). It must name one model: a single file, or the parts
  of one split model (``name-00001-of-00003.gguf`` ...: every part is fetched, the first is
  loaded, as llama.cpp does). Several candidates are an error that lists them. ``mmproj-*``
  files (vision projectors) are never taken for the model.
* Offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable), the glob is matched against the
  files of the cached snapshot of ``revision`` (default ``main``).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import replace
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Model

__all__ = ["resolve", "from_pretrained", "parse_hf_spec", "DEFAULT_QUANT"]

_log = logging.getLogger("llama_mtp")

DEFAULT_QUANT = "Q4_K_M"
"""The quantization ``-hf repo`` picks without ``:QUANT``, as llama.cpp's ``-hf``."""

_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def _hub() -> ModuleType:
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError("loading from the Hugging Face Hub needs huggingface_hub: "
                          "pip install 'llama-mtp[hub]'") from None
    return huggingface_hub


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def parse_hf_spec(spec: str) -> tuple[str, str]:
    """``"user/repo[:QUANT]"`` (llama.cpp's ``-hf``) -> ``(repo_id, glob)``; the quantization is
    matched anywhere in a file name, case-insensitive (default ``Q4_K_M``)."""
    repo, _, quant = spec.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"-hf takes user/repo[:QUANT] (e.g. unsloth/Qwen3.6-27B-GGUF:Q4_K_M), not {spec!r}")
    return repo, f"*{quant or DEFAULT_QUANT}*.gguf"


def _listing(hf: ModuleType, repo_id: str, revision: str | None, cache_dir: str | None,
             offline: bool) -> tuple[list[str], bool]:
    """The repository's file paths, and whether they come from the local cache."""
    if not offline:
        try:
            return list(hf.list_repo_files(repo_id, revision=revision)), False
        except Exception as exc:  # noqa: BLE001 -- any failure to reach the Hub: try the cache
            online_error: Exception | None = exc
    else:
        online_error = None
    try:
        folder = Path(hf.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                           local_files_only=True))
    except Exception as exc:  # noqa: BLE001 -- reported with the online error, if any
        where = f"the cache ({cache_dir or 'huggingface_hub default'})"
        why = f"{type(online_error).__name__}: {online_error}; " if online_error else ""
        raise FileNotFoundError(f"{repo_id}{'@' + revision if revision else ''} is not in {where} and the Hub "
                                f"cannot be asked ({why or 'HF_HUB_OFFLINE is set; '}{type(exc).__name__}: {exc})") from None
    if online_error is not None:
        _log.warning("the Hub is unreachable (%s); using the cached snapshot of %s", online_error, repo_id)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    return files, True


def _matches(path: str, pattern: str) -> bool:
    name = path.lower()
    pat = pattern.lower()
    return fnmatch.fnmatchcase(name, pat) or ("/" not in pat and fnmatch.fnmatchcase(PurePosixPath(name).name, pat))


def _choose(files: list[str], pattern: str, repo_id: str, exclude: str | None = None) -> list[str]:
    """The files of the one model ``pattern`` names: ``[file]`` or every part of a split."""
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    hits = [f for f in ggufs if _matches(f, pattern)
            and not (PurePosixPath(f).name.lower().startswith("mmproj") and not pattern.lower().startswith("mmproj"))
            and not (exclude is not None and _matches(f, exclude))]
    models: dict[str, list[str]] = {}
    for f in hits:
        m = _SPLIT.match(f)
        key = f"{m['prefix']}-*-of-{m['count']}.gguf" if m else f
        models.setdefault(key, []).append(f)
    if not models:
        listed = ", ".join(ggufs[:40]) + (" ..." if len(ggufs) > 40 else "") if ggufs else "none"
        raise FileNotFoundError(f"no GGUF in {repo_id} matches {pattern!r}; its GGUF files: {listed}")
    if len(models) > 1:
        raise ValueError(f"{pattern!r} matches {len(models)} models in {repo_id}: " + ", ".join(sorted(models)) +
                         "; pass filename= one of them (or a narrower glob)")
    key, group = next(iter(models.items()))
    m = _SPLIT.match(group[0])
    if m is None:
        return group
    count = int(m["count"])
    parts = [f"{m['prefix']}-{i:05d}-of-{m['count']}.gguf" for i in range(1, count + 1)]
    present = {f.lower(): f for f in ggufs}
    missing = [p for p in parts if p.lower() not in present]
    if missing:
        raise FileNotFoundError(f"{key} in {repo_id} is split into {count} parts but these are not available: "
                                + ", ".join(missing))
    return [present[p.lower()] for p in parts]


def resolve(repo_id: str, filename: str = f"*{DEFAULT_QUANT}*.gguf", *, revision: str | None = None,
            cache_dir: str | os.PathLike[str] | None = None, exclude: str | None = None) -> Path:
    """Fetch the model ``filename`` names in ``repo_id`` (every part of a split one) into the
    cache, or find it there, and return the local path of the file to load (the first part).

    Raises ``FileNotFoundError`` when nothing matches (the message lists the repository's GGUF
    files) or a split part is missing, ``ValueError`` when the glob names several models (it
    lists them), ``ImportError`` without ``huggingface_hub``.
    """
    hf = _hub()
    cache = None if cache_dir is None else os.fspath(cache_dir)
    offline = _offline()
    files, from_cache = _listing(hf, repo_id, revision, cache, offline)
    chosen = _choose(files, filename, repo_id, exclude)
    local: list[str] = []
    for i, name in enumerate(chosen):
        if len(chosen) > 1:
            _log.info("%s: part %d of %d: %s", repo_id, i + 1, len(chosen), name)
        # huggingface_hub draws the progress bar (HF_HUB_DISABLE_PROGRESS_BARS=1 hides it)
        local.append(str(hf.hf_hub_download(repo_id, name, revision=revision, cache_dir=cache,
                                            local_files_only=offline or from_cache)))
    first = Path(local[0])
    if len(local) > 1 and any(Path(p).parent != first.parent for p in local):
        raise FileNotFoundError(f"the parts of {chosen[0]} did not land in one directory: {local}")
    return first


def from_pretrained(cls: type[Model], repo_id: str, filename: str = f"*{DEFAULT_QUANT}*.gguf", *,
                    revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                    mtp_sidecar: str | None = None, **model_kwargs: Any) -> Model:
    """:meth:`Model.from_pretrained`: :func:`resolve` the model (and an MTP sidecar), load it."""
    from .speculator import Speculator

    path = resolve(repo_id, filename, revision=revision, cache_dir=cache_dir, exclude=mtp_sidecar)
    if mtp_sidecar is not None:
        sidecar = resolve(repo_id, mtp_sidecar, revision=revision, cache_dir=cache_dir)
        spec = model_kwargs.get("speculator")
        if spec is None:
            model_kwargs["speculator"] = Speculator.mtp(sidecar=sidecar)
        else:
            spec = Speculator.coerce(spec)
            if spec.type != "draft-mtp" or spec.model_path:
                raise ValueError("mtp_sidecar goes with an MTP speculator (Speculator.mtp(...)) or none")
            model_kwargs["speculator"] = replace(spec, model_path=str(sidecar))
    return cls(path, **model_kwargs)
