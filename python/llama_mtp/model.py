"""The :class:`Model`: a GGUF model loaded by llama.cpp, its metadata and its tokenizer."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from . import _core
from .chat import ChatResult, ChatSession, ChatStream, MessageLike
from .chat import chat as chat_impl
from .errors import ModelClosedError
from .gguf_info import MetadataValue, MTPStatus, report_from_native
from .results import GenerationChunk, GenerationOutput
from .sampling import SamplingParams
from .speculator import Speculator
from .streaming import GenerationStream, RunFn, astream
from .system import ensure_backend

Prompt = str | Sequence[int]
SpeculatorLike = Speculator | Mapping[str, Any] | None

LLAMA_TOKEN_NULL = -1


class Model:
    """A GGUF model loaded with llama.cpp.

    >>> model = Model("Qwen3.6-27B-MTP-Q4_K_M.gguf", n_gpu_layers=-1)   # doctest: +SKIP
    >>> model.arch, model.has_mtp, model.tokenize("你好, world")           # doctest: +SKIP

    Args:
        path: the ``.gguf`` file.
        n_gpu_layers: layers to offload to the GPU; ``-1`` puts every layer there when a GPU
            backend exists (llama.cpp's ``-ngl 999``), ``0`` keeps the model on the CPU.
        main_gpu: the GPU used when the model is not split.
        vocab_only: load only the vocabulary (tokenizer and metadata), no weights.
        use_mmap: memory-map the weights (llama.cpp's default).
        use_mlock: lock the weights in RAM.
        load_mtp: load the MTP head; ``None`` loads it when the file declares one.
        check_tensors: let llama.cpp validate tensor data while loading (slow).
        n_ctx: context window in tokens (``-c``); 0 uses the model's training length.
        n_batch, n_ubatch: logical and physical batch sizes for prompt evaluation (``-b``, ``-ub``).
        n_threads, n_threads_batch: CPU threads for generation / batches (``-t``, ``-tb``);
            ``None`` uses the physical cores.
        flash_attn: ``"auto"``, ``"on"`` or ``"off"`` (``-fa``).
        cache_type_k, cache_type_v: KV cache types (``-ctk``, ``-ctv``): ``"f16"``, ``"q8_0"``, ...

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelLoadError: the file is not a loadable model; the message says why.

    All methods are thread-safe. ``close()`` (or leaving a ``with`` block) releases the weights.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_gpu_layers: int = -1,
        main_gpu: int = 0,
        vocab_only: bool = False,
        use_mmap: bool = True,
        use_mlock: bool = False,
        load_mtp: bool | None = None,
        check_tensors: bool = False,
        n_ctx: int = 4096,
        n_batch: int = 2048,
        n_ubatch: int = 512,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        flash_attn: str = "auto",
        cache_type_k: str = "f16",
        cache_type_v: str = "f16",
    ) -> None:
        ensure_backend()
        if n_ctx < 0 or n_batch < 1 or n_ubatch < 1:
            raise ValueError("n_ctx must be >= 0 and n_batch, n_ubatch >= 1")
        if flash_attn not in ("auto", "on", "off"):
            raise ValueError("flash_attn must be 'auto', 'on' or 'off'")
        self._path = os.fspath(path)
        options = _core.ModelOptions()
        options.n_gpu_layers = int(n_gpu_layers)
        options.main_gpu = int(main_gpu)
        options.vocab_only = bool(vocab_only)
        options.use_mmap = bool(use_mmap)
        options.use_mlock = bool(use_mlock)
        options.load_mtp = load_mtp
        options.check_tensors = bool(check_tensors)
        self._native: _core.Model = _core.Model(self._path, options)
        self._vocab_only = bool(vocab_only)
        self._metadata: dict[str, MetadataValue] | None = None
        self._mtp_status: MTPStatus | None = None
        ctx = _core.ContextOptions()
        ctx.n_ctx = int(n_ctx) if n_ctx > 0 else max(16, int(self._native.n_ctx_train))
        ctx.n_batch = int(n_batch)
        ctx.n_ubatch = min(int(n_ubatch), int(n_batch))
        ctx.n_threads = int(n_threads or 0)
        ctx.n_threads_batch = int(n_threads_batch or 0)
        ctx.flash_attn = flash_attn
        ctx.cache_type_k = cache_type_k
        ctx.cache_type_v = cache_type_v
        self._context_options = ctx
        self._session: _core.Session | None = None
        self._session_lock = threading.Lock()
        self._chat_sessions: dict[str, ChatSession] = {}

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the weights. Further use raises :class:`~llama_mtp.errors.ModelClosedError`."""
        with self._session_lock:
            self._session = None  # the context goes first; running calls keep it until they end
            self._chat_sessions.clear()
        self._native.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return bool(self._native.closed)

    def __enter__(self) -> Model:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"Model({self._path!r}, closed)"
        return (f"Model({self._path!r}, arch={self.arch!r}, n_params={self.n_params}, "
                f"has_mtp={self.has_mtp})")

    def _live(self) -> _core.Model:
        if self._native.closed:
            raise ModelClosedError("the model is closed")
        return self._native

    # -- description ---------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The file this model was loaded from."""
        return self._path

    @property
    def arch(self) -> str:
        """``general.architecture``, e.g. ``"qwen35"``."""
        return str(self._native.arch)

    @property
    def description(self) -> str:
        """llama.cpp's one-line description (``"qwen35 27B Q4_K - Medium"``)."""
        return str(self._live().description)

    @property
    def n_params(self) -> int:
        """Number of weights (MTP head included when loaded)."""
        return int(self._live().n_params)

    @property
    def size_bytes(self) -> int:
        """Bytes of weights loaded."""
        return int(self._live().model_size)

    @property
    def n_vocab(self) -> int:
        """Vocabulary size."""
        return int(self._live().n_vocab)

    @property
    def n_ctx_train(self) -> int:
        """Context length the model was trained with."""
        return int(self._live().n_ctx_train)

    @property
    def n_embd(self) -> int:
        """Hidden size."""
        return int(self._live().n_embd)

    @property
    def n_layer(self) -> int:
        """Transformer blocks, not counting MTP blocks."""
        return int(self._live().n_layer)

    @property
    def n_mtp_layers(self) -> int:
        """MTP blocks declared by the file (``<arch>.nextn_predict_layers``)."""
        return int(self._native.n_mtp_layers)

    @property
    def mtp_status(self) -> MTPStatus:
        """Whether the file's MTP head is declared and complete (see :class:`MTPStatus`), from the
        metadata and tensor table read when the model was loaded (the file is not read again)."""
        if self._mtp_status is None:
            self._mtp_status = report_from_native(self._native.gguf(0)).mtp
        return self._mtp_status

    @property
    def has_mtp(self) -> bool:
        """The file has a complete MTP head (metadata and ``blk.N.nextn.*`` tensors)."""
        return self.mtp_status.complete

    @property
    def mtp_loaded(self) -> bool:
        """The MTP head's weights were loaded (see ``load_mtp``)."""
        return bool(self._native.mtp_loaded)

    @property
    def metadata(self) -> dict[str, MetadataValue]:
        """Every GGUF key with its value (strings, ints, floats, bools, lists)."""
        if self._metadata is None:
            self._metadata = report_from_native(self._native.gguf()).metadata
        return self._metadata

    @property
    def chat_template(self) -> str | None:
        """The model's own chat template (``tokenizer.chat_template``), if it has one."""
        value = self._live().chat_template("")
        return None if value is None else str(value)

    # -- special tokens ------------------------------------------------------------------------
    @staticmethod
    def _token_or_none(token: int) -> int | None:
        return None if token == LLAMA_TOKEN_NULL else int(token)

    @property
    def bos(self) -> int | None:
        """Beginning-of-sequence token id, or ``None``."""
        return self._token_or_none(self._live().bos)

    @property
    def eos(self) -> int | None:
        """End-of-sequence token id, or ``None``."""
        return self._token_or_none(self._live().eos)

    @property
    def eot(self) -> int | None:
        """End-of-turn token id (``<|im_end|>`` for Qwen), or ``None``."""
        return self._token_or_none(self._live().eot)

    def is_eog(self, token: int) -> bool:
        """True if ``token`` ends generation (EOS, EOT, ...)."""
        return bool(self._live().is_eog(int(token)))

    # -- tokenizer -----------------------------------------------------------------------------
    def tokenize(self, text: str | bytes, *, add_special: bool = False,
                 parse_special: bool = False) -> list[int]:
        """Token ids of ``text``.

        ``add_special`` adds BOS/EOS as the model asks; ``parse_special`` turns special-token
        text such as ``<|im_start|>`` into the special token instead of plain text.
        """
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        return list(self._live().tokenize(text, add_special, parse_special))

    def detokenize(self, tokens: list[int] | tuple[int, ...], *, remove_special: bool = False,
                   unparse_special: bool = True) -> str:
        """Text of ``tokens``. Bytes that are not valid UTF-8 become U+FFFD.

        Raises ``ValueError`` for an id outside ``[0, n_vocab)``.
        """
        raw: bytes = self._live().detokenize([int(t) for t in tokens], remove_special, unparse_special)
        return raw.decode("utf-8", errors="replace")

    def token_to_piece(self, token: int, *, special: bool = True) -> bytes:
        """The bytes of one token (may be part of a multi-byte character)."""
        return bytes(self._live().token_to_piece(int(token), special))

    # -- generation ---------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        """Context window of the generation session."""
        return int(self._context_options.n_ctx)

    def _get_session(self) -> _core.Session:
        with self._session_lock:
            if self._session is None:
                if self._vocab_only:
                    raise ValueError("this model was loaded with vocab_only=True: it cannot generate")
                self._session = _core.Session(self._live(), self._context_options)
            return self._session

    def _prompt_tokens(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            tokens = self.tokenize(prompt, add_special=True, parse_special=True)
        else:
            tokens = [int(t) for t in prompt]
        if not tokens:
            raise ValueError("the prompt is empty")
        return tokens

    def _runner(self, tokens: list[int], sampling: _core.SamplingOptions,
                speculator: SpeculatorLike, cache_prompt: bool) -> RunFn:
        native_spec = Speculator.coerce(speculator).to_native()
        session = self._get_session()

        def run(steps: _core.StepQueue, token: _core.CancelToken) -> _core.GenerationResult:
            return session.generate(tokens, sampling, native_spec, cache_prompt, steps, token, False)

        return run

    def _generate_native(self, tokens: list[int], sampling: _core.SamplingOptions,
                         speculator: SpeculatorLike, cache_prompt: bool = True,
                         cancel: _core.CancelToken | None = None) -> GenerationOutput:
        native_spec = Speculator.coerce(speculator).to_native()
        session = self._get_session()
        on_main = threading.current_thread() is threading.main_thread()
        result = session.generate(tokens, sampling, native_spec, cache_prompt, None, cancel, on_main)
        return GenerationOutput.from_native(result)

    def _stream_native(self, tokens: list[int], sampling: _core.SamplingOptions,
                       speculator: SpeculatorLike, cache_prompt: bool = True) -> GenerationStream:
        return GenerationStream(self._runner(tokens, sampling, speculator, cache_prompt))

    def generate(self, prompt: Prompt, sampling: SamplingParams | None = None, *,
                 speculator: SpeculatorLike = None, cache_prompt: bool = True,
                 cancel: _core.CancelToken | None = None) -> GenerationOutput:
        """Generate a completion of ``prompt`` (text, or token ids).

        ``speculator``: :meth:`Speculator.mtp` for native MTP speculative decoding, a vLLM-style
        ``{"method": "mtp", "num_speculative_tokens": 2}`` dict, or ``None`` for plain decoding.
        ``cache_prompt``: reuse the state of a shared prefix from the previous call (as
        llama-server does). ``cancel``: a :class:`CancelToken` another thread may trigger.
        Ctrl-C (KeyboardInterrupt) stops a blocking call on the main thread within one step.

        Raises :class:`~llama_mtp.errors.ContextOverflowError` when the prompt does not fit,
        :class:`~llama_mtp.errors.MTPUnavailableError` when MTP is asked of a model without it.
        """
        return self._generate_native(self._prompt_tokens(prompt), (sampling or SamplingParams()).to_native(),
                                     speculator, cache_prompt, cancel)

    def stream(self, prompt: Prompt, sampling: SamplingParams | None = None, *,
               speculator: SpeculatorLike = None, cache_prompt: bool = True) -> GenerationStream:
        """Like :meth:`generate`, yielding :class:`GenerationChunk` s as they are decoded.

        Each chunk's text is whole UTF-8 characters; the concatenation equals ``generate``'s text.
        After the loop, ``stream.output`` holds the full :class:`GenerationOutput`. Closing the
        iterator (``break``) stops generation within one step.
        """
        return self._stream_native(self._prompt_tokens(prompt), (sampling or SamplingParams()).to_native(),
                                   speculator, cache_prompt)

    def astream(self, prompt: Prompt, sampling: SamplingParams | None = None, *,
                speculator: SpeculatorLike = None,
                cache_prompt: bool = True) -> AsyncIterator[GenerationChunk]:
        """Async iterator form of :meth:`stream`; decoding runs off the event loop."""
        return astream(self._runner(self._prompt_tokens(prompt), (sampling or SamplingParams()).to_native(),
                                    speculator, cache_prompt))

    # -- chat ----------------------------------------------------------------------------------
    def _chat_session(self, chat_template: str | None) -> ChatSession:
        key = chat_template or ""
        with self._session_lock:
            if key not in self._chat_sessions:
                self._chat_sessions[key] = ChatSession(self, chat_template)
            return self._chat_sessions[key]

    def chat(self, messages: Sequence[MessageLike], sampling: SamplingParams | None = None, *,
             speculator: SpeculatorLike = None, enable_thinking: bool = True,
             reasoning_budget: int | None = None, tools: Sequence[Mapping[str, Any]] | None = None,
             tool_choice: str = "auto", chat_template: str | None = None) -> ChatResult:
        """Reply to OpenAI-style ``messages`` (dicts or :class:`ChatMessage`).

        The prompt is rendered with the GGUF's own chat template (or ``chat_template``); the reply
        is split into ``content`` (visible answer), ``reasoning_content`` (the ``<think>`` block)
        and ``tool_calls``. ``enable_thinking=False`` asks the template for a direct answer;
        ``reasoning_budget`` caps the thinking tokens (llama.cpp forces the end tag). Consecutive
        turns reuse the shared prompt prefix. Raises :class:`~llama_mtp.errors.ChatTemplateError`.
        """
        out = chat_impl(self, self._chat_session(chat_template), messages, sampling, speculator,
                        enable_thinking, reasoning_budget, tools, tool_choice, stream=False)
        assert isinstance(out, ChatResult)
        return out

    def chat_stream(self, messages: Sequence[MessageLike], sampling: SamplingParams | None = None, *,
                    speculator: SpeculatorLike = None, enable_thinking: bool = True,
                    reasoning_budget: int | None = None,
                    tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: str = "auto",
                    chat_template: str | None = None) -> ChatStream:
        """Streaming :meth:`chat`: yields :class:`ChatDelta` s (content and reasoning separately);
        afterwards ``stream.result`` is the :class:`ChatResult`."""
        out = chat_impl(self, self._chat_session(chat_template), messages, sampling, speculator,
                        enable_thinking, reasoning_budget, tools, tool_choice, stream=True)
        assert isinstance(out, ChatStream)
        return out

    def reset_cache(self) -> None:
        """Forget the cached prompt prefix."""
        if self._session is not None:
            self._session.reset()

    @property
    def native(self) -> _core.Model:
        """The extension object (for the engine; not a stable API)."""
        return self._live()
