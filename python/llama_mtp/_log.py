"""Routing of llama.cpp's log into Python's :mod:`logging` (logger ``llama_mtp``).

llama.cpp is chatty; by default only warnings and errors reach the logger. Lines below the
chosen level are dropped inside the extension, so a quiet run costs nothing.
"""

from __future__ import annotations

import atexit
import logging

from . import _core

logger = logging.getLogger("llama_mtp")
# A library does not print: lines reach the application only through its own logging setup.
logger.addHandler(logging.NullHandler())
_native_logger = logging.getLogger("llama_mtp.llama_cpp")
_level = logging.WARNING


def _sink(level: int, message: str) -> None:
    _native_logger.log(level, "%s", message)


def set_log_level(level: int | str) -> None:
    """Set the level from which llama.cpp's own log lines reach the ``llama_mtp`` logger.

    ``level`` is a :mod:`logging` level (``logging.INFO``) or its name (``"INFO"``). ``DEBUG``
    also turns on llama.cpp ``common``'s own logger, which prints to stderr.
    """
    global _level
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise ValueError(f"unknown log level {level!r}")
        level = resolved
    _level = int(level)
    _core.set_log_sink(_sink, _level)
    if logger.level == logging.NOTSET or logger.level > _level:
        logger.setLevel(_level)


def get_log_level() -> int:
    """The level set by :func:`set_log_level` (``logging.WARNING`` by default)."""
    return _level


def _detach() -> None:
    # The sink must not be called once the interpreter starts tearing down.
    _core.set_log_sink(None, 100)


_core.set_log_sink(_sink, _level)
atexit.register(_detach)
