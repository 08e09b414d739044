"""The :class:`Model`: a GGUF model loaded by llama.cpp, its metadata and its tokenizer."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, overload

from . import _core
from .chat import AsyncChatStream, ChatResult, ChatSession, ChatStream, MessageLike
from .engine import Engine, EngineMetrics
from .errors import DecodeError, ModelClosedError, ModelLoadError
from .gguf_info import MetadataValue, MTPStatus, report_from_native
from .results import GenerationOutput
from .sampling import SamplingParams
from .speculator import Speculator
from .streaming import AsyncGenerationStream, GenerationStream
from .system import DeviceInfo, ensure_backend
from .tensor_placement import OverrideTensor, normalize_overrides

Prompt = str | Sequence[int]
SpeculatorLike = Speculator | Mapping[str, Any] | None

LLAMA_TOKEN_NULL = -1

_log = logging.getLogger("llama_mtp")


class Model:
    """A GGUF model loaded with llama.cpp.

    >>> model = Model("Qwen3.6-27B-MTP-Q4_K_M.gguf", n_gpu_layers=-1)   # doctest: +SKIP
    >>> model.arch, model.has_mtp, model.tokenize("你好, world")           # doctest: +SKIP

    Args:
        path: the ``.gguf`` file.
        n_gpu_layers: layers to offload to the GPU; ``-1`` puts every layer there when a GPU
            backend exists (llama.cpp's ``-ngl 999``), ``0`` keeps the model on the CPU.
        main_gpu: the device used when the model is not split (``-mg``), and for intermediate
            results and KV with ``split_mode="row"``; an index into :attr:`devices`.
        split_mode: how the layers spread over several devices (``-sm``): ``"layer"`` (default:
            whole layers per device, pipelined), ``"row"`` (each weight split by rows across
            GPUs that support it, CUDA; not over RPC servers), ``"none"`` (only ``main_gpu``).
            llama.cpp's experimental ``"tensor"`` is refused: it aborts on Qwen3.5/3.6 graphs in
            this llama.cpp version.
        tensor_split: the share of the layers (or rows) per device (``-ts 3,1``), in the order of
            :attr:`devices`; ``None`` splits by free memory. More entries than devices, or a
            negative one, is a ``ValueError``; on a machine without GPU or RPC server the split
            options have no effect (logged).
        rpc_servers: ``["host:port", ...]`` of ``llama-mtp rpc-server`` (or llama.cpp
            ``rpc-server``) processes whose devices take part of the layers (``--rpc``); they come
            first in :attr:`devices`. An unreachable server is a ``ModelLoadError``; a server
            that goes away later ends the running requests with ``DecodeError`` (reload then).
        cpu_moe: keep every block's routed experts (``ffn_*_exps``) in CPU memory (``--cpu-moe``):
            a mixture-of-experts model then needs GPU memory only for the rest.
        n_cpu_moe: keep the routed experts of blocks 0 .. ``n_cpu_moe - 1`` in CPU memory
            (``--n-cpu-moe N``).
        override_tensor: tensors whose name matches a pattern go to that buffer type
            (``-ot PATTERN=BUFFER``): ``[(r"blk\\.[0-9]\\.ffn_.*_exps", "CPU")]``, a dict, or the
            ``"PATTERN=BUFFER,..."`` string; first match wins, before the ``cpu_moe`` ones. The
            MTP block (``blk.<n_layer>``) is placed by these options too. See
            :mod:`llama_mtp.tensor_placement`; ``ValueError`` for a bad pattern or an unknown
            buffer type (the message lists the known ones).
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
        offload_kqv: keep the KV cache and its operations on the GPU (``-nkvo`` turns it off).
        n_parallel: sequence slots (``-np``): up to this many requests are decoded together, in
            one batch per step; more wait in a queue. ``n_ctx`` is shared by the slots as in
            llama-server: with ``kv_unified`` each request may use all of it, without, each slot
            gets ``n_ctx / n_parallel``.
        kv_unified: one KV pool for all slots (``-kvu``; ``False``: ``-no-kvu``).
        speculator: the speculator of every request (:meth:`Speculator.mtp` for the card's
            ``--spec-type draft-mtp``), fixed for the model's lifetime; a call may then ask for
            ``Speculator.none()`` or a smaller ``n_max``. Without it, each call's ``speculator``
            argument chooses (switching speculators waits until no request runs).
        max_queue: requests that may wait for a slot; beyond, calls raise
            :class:`~llama_mtp.errors.QueueFullError`.
        warmup: the context is created at load, as llama.cpp's tools do; with ``warmup`` one
            throwaway decode runs too (``--no-warmup`` turns it off), so that the first request
            does not pay the first graph's allocations and weight page-ins. (On RPC servers
            without a ``speculator``, the context is made at the first request.)

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelLoadError: the file is not a loadable model, or its context could not be made (out
            of memory, an RPC server gone); the message says why.

    All methods are thread-safe. ``close()`` (or leaving a ``with`` block) releases the weights.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_gpu_layers: int = -1,
        main_gpu: int = 0,
        split_mode: str = "layer",
        tensor_split: Sequence[float] | None = None,
        rpc_servers: Sequence[str] | str | None = None,
        cpu_moe: bool = False,
        n_cpu_moe: int = 0,
        override_tensor: OverrideTensor = None,
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
        offload_kqv: bool = True,
        n_parallel: int = 1,
        kv_unified: bool = True,
        speculator: SpeculatorLike = None,
        max_queue: int = 1024,
        warmup: bool = True,
    ) -> None:
        ensure_backend()
        if n_parallel < 1:
            raise ValueError("n_parallel must be >= 1")
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        if n_ctx < 0:
            raise ValueError("n_ctx must be >= 0 (0: the model's training context)")
        self._path = os.fspath(path)
        options = _core.ModelOptions()
        options.n_gpu_layers = int(n_gpu_layers)
        options.main_gpu = int(main_gpu)
        self._set_placement(options, split_mode, tensor_split, rpc_servers)
        options.override_tensor = list(normalize_overrides(override_tensor))
        options.cpu_moe = bool(cpu_moe)
        options.n_cpu_moe = int(n_cpu_moe)  # checked by the native core, as the patterns
        options.vocab_only = bool(vocab_only)
        options.use_mmap = bool(use_mmap)
        options.use_mlock = bool(use_mlock)
        options.load_mtp = load_mtp
        options.check_tensors = bool(check_tensors)
        self._native: _core.Model = _core.Model(self._path, options)
        self._vocab_only = bool(vocab_only)
        self._report_placement(options)
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
        ctx.offload_kqv = bool(offload_kqv)
        ctx.kv_unified = bool(kv_unified)
        try:
            _core.validate_context(ctx, int(n_parallel))
        except ValueError:
            self._native.close()
            raise
        self._context_options = ctx
        self._n_parallel = int(n_parallel)
        self._max_queue = int(max_queue)
        self._speculator: Speculator | None = None if speculator is None else Speculator.coerce(speculator)
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._chat_sessions: dict[str, ChatSession] = {}
        self._warmup = bool(warmup)
        # A model on RPC servers makes its context at the first request, unless a speculator is
        # set: ggml asserts (an abort) when a server dies while the context's buffers are being
        # allocated on it, and at load that window is hit by a server killed mid-load.
        if not vocab_only and (not options.rpc_servers or self._speculator is not None):
            try:
                # the context at load, as llama.cpp: a speculator that cannot run, or a context
                # that does not fit, fails here and not at the first request
                self._get_engine()
            except DecodeError as e:
                # the weights loaded but their context could not be made (memory, a broken RPC
                # server): a failed load, as in llama.cpp
                self._native.close()
                raise ModelLoadError(f"'{self._path}' loaded, but its context could not be made: {e}") from e
            except BaseException:
                self._native.close()
                raise

    @staticmethod
    def _set_placement(options: _core.ModelOptions, split_mode: str, tensor_split: Sequence[float] | None,
                       rpc_servers: Sequence[str] | str | None) -> None:
        options.split_mode = str(split_mode)  # checked by the native core
        if tensor_split is not None:
            if isinstance(tensor_split, (str, bytes)):
                raise TypeError("tensor_split is a list of numbers, e.g. [3, 1]")
            options.tensor_split = [float(x) for x in tensor_split]
        if rpc_servers is not None:
            servers = rpc_servers.split(",") if isinstance(rpc_servers, str) else list(rpc_servers)
            options.rpc_servers = [str(s).strip() for s in servers if str(s).strip()]

    def _report_placement(self, options: _core.ModelOptions) -> None:
        if options.vocab_only:
            return
        devices = self.devices
        if devices:
            _log.info("model layers on %s (split_mode=%s%s)", ", ".join(f"{d.name} ({d.description})" for d in devices),
                      options.split_mode, f", tensor_split={list(options.tensor_split)}" if options.tensor_split else "")
            return
        asked = [f"{k}={v!r}" for k, v, default in (("split_mode", options.split_mode, "layer"),
                                                    ("tensor_split", list(options.tensor_split), []),
                                                    ("main_gpu", options.main_gpu, 0)) if v != default]
        if asked:
            _log.warning("%s: no effect, this machine has no GPU and no RPC server was given: the model runs "
                         "on the CPU", ", ".join(asked))

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str = "*Q4_K_M*.gguf", *, revision: str | None = None,
                        cache_dir: str | os.PathLike[str] | None = None, mtp_sidecar: str | None = None,
                        **model_kwargs: Any) -> Model:
        """Download a GGUF from the Hugging Face Hub (or find it in the local cache) and load it,
        as llama-cpp-python's ``Llama.from_pretrained`` (needs ``pip install llama-mtp[hub]``).

        ``filename`` is a file name or a glob (``"*Q4_K_M*.gguf"``); it must match one file, or one
        split model (``...-00001-of-00003.gguf``: every part is fetched, the first one loaded).
        ``mtp_sidecar`` names (or globs) an MTP-head GGUF in the same repository: the model then
        drafts with it (``Speculator.mtp(sidecar=...)``, unless ``speculator=`` says otherwise).
        The other arguments are :class:`Model`'s. See :mod:`llama_mtp.hub`.
        """
        from . import hub

        return hub.from_pretrained(cls, repo_id, filename, revision=revision, cache_dir=cache_dir,
                                   mtp_sidecar=mtp_sidecar, **model_kwargs)

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the weights. Further use raises :class:`~llama_mtp.errors.ModelClosedError`."""
        with self._lock:
            engine, self._engine = self._engine, None
            self._chat_sessions.clear()
        if engine is not None:
            engine.close()  # running requests end with ModelClosedError
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
    def devices(self) -> list[DeviceInfo]:
        """The offload devices holding the layers, in split order (RPC servers first, then local
        GPUs); empty when the model runs on the CPU only. ``tensor_split`` indexes this list."""
        return [DeviceInfo(**d) for d in self._live().devices()]

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
        """Context window in tokens, shared by the sequence slots (``-c``)."""
        return int(self._context_options.n_ctx)

    @property
    def n_parallel(self) -> int:
        """Sequence slots decoded together (``-np``)."""
        return self._n_parallel

    @property
    def speculator(self) -> Speculator | None:
        """The speculator set at load, or ``None``."""
        return self._speculator

    def _get_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                if self._vocab_only:
                    raise ValueError("this model was loaded with vocab_only=True: it cannot generate")
                self._engine = Engine(self._live(), self._context_options, n_parallel=self._n_parallel,
                                      max_queue=self._max_queue, speculator=self._speculator,
                                      warmup=self._warmup)
            return self._engine

    def _prompt_tokens(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            tokens = self.tokenize(prompt, add_special=True, parse_special=True)
        elif isinstance(prompt, (bytes, bytearray)):
            raise TypeError("prompt must be str or a sequence of token ids, not bytes")
        else:
            tokens = [int(t) for t in prompt]
        if not tokens:
            raise ValueError("the prompt is empty")
        return tokens

    def _resolve(self, speculator: SpeculatorLike) -> Speculator:
        if speculator is None:
            return self._speculator or Speculator.none()
        return Speculator.coerce(speculator)

    @overload
    def generate(self, prompt: Prompt, sampling: SamplingParams | None = None, *,
                 speculator: SpeculatorLike = None, cache_prompt: bool = True,
                 cancel: _core.CancelToken | None = None) -> GenerationOutput: ...

    @overload
    def generate(self, prompt: list[str] | list[list[int]] | list[Prompt], sampling: SamplingParams | Sequence[SamplingParams] | None = None, *,
                 speculator: SpeculatorLike = None, cache_prompt: bool = True,
                 cancel: _core.CancelToken | None = None) -> list[GenerationOutput]: ...

    def generate(self, prompt: Prompt | list[str] | list[list[int]] | list[Prompt],
                 sampling: SamplingParams | Sequence[SamplingParams] | None = None, *,
                 speculator: SpeculatorLike = None, cache_prompt: bool = True,
                 cancel: _core.CancelToken | None = None) -> GenerationOutput | list[GenerationOutput]:
        """Generate a completion of ``prompt`` (text, or token ids).

        A list of prompts (each text or a list of token ids) is generated as one batch, as vLLM's
        ``LLM.generate(prompts)``: the outputs come back in order; ``sampling`` may then be one
        :class:`SamplingParams` for all or a list with one per prompt.

        ``speculator``: :meth:`Speculator.mtp` for native MTP speculative decoding, a vLLM-style
        ``{"method": "mtp", "num_speculative_tokens": 2}`` dict, or ``None`` for the model's
        (plain decoding unless one was set at load). ``cache_prompt``: reuse the state of a shared
        prefix from an earlier call (as llama-server does). ``cancel``: a :class:`CancelToken`
        another thread may trigger. Ctrl-C (KeyboardInterrupt) stops a blocking call within one
        step.

        Raises :class:`~llama_mtp.errors.ContextOverflowError` when the prompt does not fit,
        :class:`~llama_mtp.errors.MTPUnavailableError` when MTP is asked of a model without it,
        :class:`~llama_mtp.errors.QueueFullError` when too many requests wait already.
        """
        spec = self._resolve(speculator)
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            prompts: list[Prompt] = list(prompt)
            if sampling is None or isinstance(sampling, SamplingParams):
                params = [sampling or SamplingParams()] * len(prompts)
            else:
                params = list(sampling)
                if len(params) != len(prompts):
                    raise ValueError(f"{len(prompts)} prompts but {len(params)} SamplingParams")
            batch = [(self._prompt_tokens(p), sp.to_native()) for p, sp in zip(prompts, params)]
            return self._get_engine().generate_many(batch, spec, cache_prompt=cache_prompt, cancel=cancel)
        if sampling is not None and not isinstance(sampling, SamplingParams):
            raise TypeError("a list of SamplingParams goes with a list of prompts")
        single: Prompt = prompt  # type: ignore[assignment]
        return self._get_engine().generate(self._prompt_tokens(single), (sampling or SamplingParams()).to_native(),
                                           spec, cache_prompt=cache_prompt, cancel=cancel)

    def stream(self, prompt: Prompt, sampling: SamplingParams | None = None, *,
               speculator: SpeculatorLike = None, cache_prompt: bool = True) -> GenerationStream:
        """Like :meth:`generate`, yielding :class:`GenerationChunk` s as they are decoded.

        Each chunk's text is whole UTF-8 characters; the concatenation equals ``generate``'s text.
        After the loop, ``stream.output`` holds the full :class:`GenerationOutput`. Closing the
        iterator (``break``) stops generation within one step and frees the request's slot.
        """
        return self._get_engine().stream(self._prompt_tokens(prompt), (sampling or SamplingParams()).to_native(),
                                         self._resolve(speculator), cache_prompt=cache_prompt)

    def astream(self, prompt: Prompt, sampling: SamplingParams | None = None, *,
                speculator: SpeculatorLike = None, cache_prompt: bool = True) -> AsyncGenerationStream:
        """Async iterator form of :meth:`stream`; the event loop is never blocked. The request is
        validated and queued at once; ``stream.output`` holds the result after the loop."""
        return self._get_engine().astream(self._prompt_tokens(prompt), (sampling or SamplingParams()).to_native(),
                                          self._resolve(speculator), cache_prompt=cache_prompt)

    def metrics(self) -> EngineMetrics:
        """Counters of the model's engine since load (requests, tokens, drafts, KV usage), named
        as llama-server's ``/metrics`` and vLLM's ``spec_decode_*``."""
        with self._lock:
            engine = self._engine
        if engine is None:
            self._live()
            return EngineMetrics(n_parallel=self._n_parallel)
        return engine.metrics()

    # -- chat ----------------------------------------------------------------------------------
    def _chat_session(self, chat_template: str | None) -> ChatSession:
        key = chat_template or ""
        with self._lock:
            if key not in self._chat_sessions:
                self._chat_sessions[key] = ChatSession(
                    self._live(), chat_template, lambda text: self.tokenize(text, add_special=True, parse_special=True))
            return self._chat_sessions[key]

    def _chat_request(self, messages: Sequence[MessageLike], sampling: SamplingParams | None,
                      enable_thinking: bool, reasoning_budget: int | None,
                      tools: Sequence[Mapping[str, Any]] | None, tool_choice: str,
                      chat_template: str | None,
                      json_schema: Mapping[str, Any] | None) -> tuple[_core.ChatPrompt, list[int], _core.SamplingOptions]:
        return self._chat_session(chat_template).prepare(messages, sampling, enable_thinking, reasoning_budget,
                                                         tools, tool_choice, json_schema)

    def chat(self, messages: Sequence[MessageLike], sampling: SamplingParams | None = None, *,
             speculator: SpeculatorLike = None, enable_thinking: bool = True,
             reasoning_budget: int | None = None, tools: Sequence[Mapping[str, Any]] | None = None,
             tool_choice: str = "auto", chat_template: str | None = None,
             json_schema: Mapping[str, Any] | None = None) -> ChatResult:
        """Reply to OpenAI-style ``messages`` (dicts or :class:`ChatMessage`).

        The prompt is rendered with the GGUF's own chat template (or ``chat_template``); the reply
        is split into ``content`` (visible answer), ``reasoning_content`` (the ``<think>`` block)
        and ``tool_calls``. ``enable_thinking=False`` asks the template for a direct answer;
        ``reasoning_budget`` caps the thinking tokens (llama.cpp forces the end tag). Consecutive
        turns reuse the shared prompt prefix.

        ``json_schema``: the answer is JSON valid under this schema (``{}``: any JSON object),
        llama-server's ``json_schema`` / OpenAI's ``response_format``. The constraint is the chat
        template's own grammar (llama.cpp's ``common``): the reasoning stays free, then the answer
        is JSON. It cannot be combined with ``sampling.grammar`` (ValueError). With ``tools``, the
        template's lazy grammar constrains a call from its first marker on (as llama-server); a
        ``sampling.grammar`` replaces it.

        Raises :class:`~llama_mtp.errors.ChatTemplateError`.
        """
        prompt, tokens, native = self._chat_request(messages, sampling, enable_thinking, reasoning_budget,
                                                    tools, tool_choice, chat_template, json_schema)
        out = self._get_engine().generate(tokens, native, self._resolve(speculator))
        return ChatSession.result(prompt, out)

    def chat_stream(self, messages: Sequence[MessageLike], sampling: SamplingParams | None = None, *,
                    speculator: SpeculatorLike = None, enable_thinking: bool = True,
                    reasoning_budget: int | None = None,
                    tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: str = "auto",
                    chat_template: str | None = None,
                    json_schema: Mapping[str, Any] | None = None) -> ChatStream:
        """Streaming :meth:`chat`: yields :class:`ChatDelta` s (answer, reasoning and tool-call
        pieces separately); afterwards ``stream.result`` is the :class:`ChatResult`."""
        prompt, tokens, native = self._chat_request(messages, sampling, enable_thinking, reasoning_budget,
                                                    tools, tool_choice, chat_template, json_schema)
        return ChatStream(prompt, self._get_engine().stream(tokens, native, self._resolve(speculator)))

    async def achat(self, messages: Sequence[MessageLike], sampling: SamplingParams | None = None, *,
                    speculator: SpeculatorLike = None, enable_thinking: bool = True,
                    reasoning_budget: int | None = None,
                    tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: str = "auto",
                    chat_template: str | None = None,
                    json_schema: Mapping[str, Any] | None = None) -> ChatResult:
        """Awaitable :meth:`chat`: the event loop is never blocked."""
        stream = self.achat_stream(messages, sampling, speculator=speculator, enable_thinking=enable_thinking,
                                   reasoning_budget=reasoning_budget, tools=tools, tool_choice=tool_choice,
                                   chat_template=chat_template, json_schema=json_schema)
        async for _ in stream:
            pass
        assert stream.result is not None
        return stream.result

    def achat_stream(self, messages: Sequence[MessageLike], sampling: SamplingParams | None = None, *,
                     speculator: SpeculatorLike = None, enable_thinking: bool = True,
                     reasoning_budget: int | None = None,
                     tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: str = "auto",
                     chat_template: str | None = None,
                     json_schema: Mapping[str, Any] | None = None) -> AsyncChatStream:
        """Async :meth:`chat_stream` (``async for delta in ...``); afterwards ``stream.result``."""
        prompt, tokens, native = self._chat_request(messages, sampling, enable_thinking, reasoning_budget,
                                                    tools, tool_choice, chat_template, json_schema)
        return AsyncChatStream(prompt, self._get_engine().astream(tokens, native, self._resolve(speculator)))

    def reset_cache(self) -> None:
        """Forget the cached prompt prefixes (before the next request starts)."""
        with self._lock:
            engine = self._engine
        if engine is not None:
            engine.reset_cache()
