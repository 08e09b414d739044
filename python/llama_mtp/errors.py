"""Exceptions raised by llama-mtp.

Every failure of the native core reaches Python as one of these (or as a built-in
``FileNotFoundError`` / ``ValueError``), never as a crash of the interpreter.
"""

from __future__ import annotations

__all__ = [
    "LlamaMTPError",
    "ModelLoadError",
    "MTPUnavailableError",
    "ContextOverflowError",
    "DecodeError",
    "ModelClosedError",
    "ChatTemplateError",
    "QueueFullError",
    "QuantizeError",
    "MissingExtraError",
]


class LlamaMTPError(RuntimeError):
    """Base class of every llama-mtp error."""


class ModelLoadError(LlamaMTPError):
    """The file is not a loadable model: not a GGUF, truncated, corrupt, or an architecture
    this llama.cpp build does not know. The message says which, and what to do."""


class MTPUnavailableError(LlamaMTPError):
    """MTP speculative decoding was requested but the model has no usable MTP head
    (no ``<arch>.nextn_predict_layers`` key, or the ``blk.N.nextn.*`` tensors are missing).
    Re-convert the checkpoint with a converter that keeps the ``mtp.*`` weights."""


class ContextOverflowError(LlamaMTPError, ValueError):
    """The prompt does not fit in the context window; raise ``n_ctx`` or shorten the prompt."""


class DecodeError(LlamaMTPError):
    """llama.cpp failed while evaluating a batch (out of memory, backend failure, ...)."""


class ModelClosedError(LlamaMTPError):
    """The model was used after :meth:`llama_mtp.Model.close`."""


class ChatTemplateError(LlamaMTPError, ValueError):
    """The model has no chat template (pass ``chat_template=``) or the template failed."""


class QueueFullError(LlamaMTPError):
    """More requests already wait for a sequence slot than the model's queue holds
    (``max_queue``): retry later, or load the model with a larger ``n_parallel`` / ``max_queue``.
    The server answers 503 with ``Retry-After``."""


class QuantizeError(LlamaMTPError):
    """llama.cpp's quantizer failed on a source that passed validation: the destination cannot be
    written, or a tensor cannot be converted (an already quantized source needs
    ``allow_requantize=True``). The message carries llama.cpp's reason."""


class MissingExtraError(LlamaMTPError, ImportError):
    """A feature needs packages of an optional extra that is not installed; the message names
    the ``pip install`` command (e.g. ``pip install 'llama-mtp[synthetic]'``)."""
