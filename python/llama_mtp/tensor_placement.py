"""Which buffer type single weights go to: llama.cpp's tensor buffer-type overrides.

The options keep llama.cpp's names and meanings (``common/arg.cpp``); :class:`~llama_mtp.Model`
takes them for the model, :class:`~llama_mtp.Speculator` for a separately loaded draft model:

* ``override_tensor`` (``-ot PATTERN=BUFFER,...``): tensors whose name matches the regular
  expression ``PATTERN`` (searched, ECMAScript syntax, as llama.cpp reads it) go to buffer type
  ``BUFFER`` (``"CPU"``, ``"CUDA0"``, ...: :func:`buffer_types`); the first matching pattern wins.
* ``cpu_moe`` (``--cpu-moe``): the routed experts of every block (``ffn_*_exps``) stay in CPU
  memory, so a mixture-of-experts model fits a small GPU while attention and the shared expert
  run on it.
* ``n_cpu_moe`` (``--n-cpu-moe N``): only those of blocks 0 .. N-1.

Explicit ``override_tensor`` patterns come first, then the ``cpu_moe`` / ``n_cpu_moe`` ones (all
to the CPU). The MTP block is one of the model's blocks (``blk.<n_layer>``), so the model's
options place it too. The native core checks the options (``ValueError`` for a pattern that is
not a valid regular expression, an unknown buffer type: the message lists the known ones, or a
negative ``n_cpu_moe``); this module only reads the spellings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

from . import _core
from .system import ensure_backend

__all__ = ["OverrideTensor", "buffer_types", "parse_override_tensor", "normalize_overrides"]

OverrideTensor = Union[str, Mapping[str, str], Sequence[tuple[str, str]], None]
r"""``[(r"blk\.1[0-9]\.ffn_.*_exps", "CPU"), ...]``, a ``{pattern: buffer}`` dict, or llama.cpp's
``"PATTERN=BUFFER,..."`` string."""


def buffer_types() -> list[str]:
    """The buffer types an override may name on this machine (every device's default one:
    ``["CPU"]`` without a GPU, ``["CPU", "CUDA0", ...]`` with; an RPC server's,
    ``"RPC0[host:port]"``, for a model that uses that server)."""
    ensure_backend()
    return [str(n) for n in _core.buffer_type_names()]


def parse_override_tensor(text: str) -> list[tuple[str, str]]:
    """llama.cpp's ``-ot`` argument, ``PATTERN=BUFFER[,PATTERN=BUFFER...]``, as pairs.

    Raises ``ValueError`` for an item without ``=``.
    """
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        pattern, sep, buffer = item.partition("=")
        if not sep:
            raise ValueError(f"override_tensor: {item!r} is not PATTERN=BUFFER (e.g. 'blk\\.[0-9]\\.ffn_.*_exps=CPU')")
        pairs.append((pattern, buffer))
    return pairs


def normalize_overrides(value: OverrideTensor) -> tuple[tuple[str, str], ...]:
    """Any accepted spelling of ``override_tensor`` as a tuple of ``(pattern, buffer)`` pairs
    (the native core checks the patterns and buffer types)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(parse_override_tensor(value))
    items = list(value.items()) if isinstance(value, Mapping) else list(value)
    pairs: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str) or len(item) != 2:
            raise ValueError(f"override_tensor: {item!r} is not a (pattern, buffer type) pair")
        pattern, buffer = item
        if not isinstance(pattern, str) or not isinstance(buffer, str):
            raise ValueError(f"override_tensor: {item!r} must hold two strings")
        pairs.append((pattern, buffer))
    return tuple(pairs)
