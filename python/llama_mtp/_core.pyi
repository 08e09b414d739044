"""
llama-mtp native core: llama.cpp with MTP speculative decoding.
"""
from __future__ import annotations
import collections.abc
import typing
__all__: list[str] = ['CancelToken', 'ChatDelta', 'ChatParsed', 'ChatPrompt', 'ChatStreamParser', 'ChatTemplates', 'ChatToolCall', 'ContextOptions', 'Engine', 'EngineMetrics', 'EngineOptions', 'GenerationResult', 'GenerationStats', 'Model', 'ModelOptions', 'Request', 'SamplingOptions', 'SpeculatorOptions', 'TokenLogprob', 'begin_shutdown', 'buffer_type_names', 'init_backend', 'json_schema_to_grammar', 'quantization_types', 'quantize', 'read_gguf', 'rpc_serve', 'rpc_server_devices', 'set_log_sink', 'speculator_types', 'system_info', 'validate_context', 'validate_sampling', 'validate_speculator']
class ModelOptions:
    """
    Options for loading a model.
    """
    check_tensors: bool
    cpu_moe: bool
    load_mtp: bool | None
    no_alloc: bool
    split_mode: str
    use_mlock: bool
    use_mmap: bool
    vocab_only: bool
    def __init__(self) -> None:
        ...
    @property
    def main_gpu(self) -> int:
        ...
    @main_gpu.setter
    def main_gpu(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_cpu_moe(self) -> int:
        ...
    @n_cpu_moe.setter
    def n_cpu_moe(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_gpu_layers(self) -> int:
        ...
    @n_gpu_layers.setter
    def n_gpu_layers(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def override_tensor(self) -> list[tuple[str, str]]:
        ...
    @override_tensor.setter
    def override_tensor(self, arg0: collections.abc.Sequence[tuple[str, str]]) -> None:
        ...
    @property
    def rpc_servers(self) -> list[str]:
        ...
    @rpc_servers.setter
    def rpc_servers(self, arg0: collections.abc.Sequence[str]) -> None:
        ...
    @property
    def tensor_split(self) -> list[float]:
        ...
    @tensor_split.setter
    def tensor_split(self, arg0: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
class Model:
    """
    A loaded GGUF model (native handle).
    """
    def __init__(self, path: str, options: ModelOptions) -> None:
        ...
    def chat_template(self, name: str = '') -> str | None:
        ...
    def close(self) -> None:
        ...
    def detokenize(self, tokens: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], remove_special: bool, unparse_special: bool) -> bytes:
        ...
    def devices(self) -> list[dict[str, typing.Any]]:
        """
        The offload devices the weights are spread over (empty: CPU only).
        """
    def gguf(self, max_array_items: typing.SupportsInt | typing.SupportsIndex = 18446744073709551615) -> dict[str, typing.Any]:
        """
        The file's header, metadata and tensor table as read when it was loaded (no disk read).
        """
    def is_eog(self, token: typing.SupportsInt | typing.SupportsIndex) -> bool:
        ...
    def token_to_piece(self, token: typing.SupportsInt | typing.SupportsIndex, special: bool) -> bytes:
        ...
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        ...
    @property
    def arch(self) -> str:
        ...
    @property
    def bos(self) -> int:
        ...
    @property
    def closed(self) -> bool:
        ...
    @property
    def description(self) -> str:
        ...
    @property
    def eos(self) -> int:
        ...
    @property
    def eot(self) -> int:
        ...
    @property
    def model_size(self) -> int:
        ...
    @property
    def mtp_loaded(self) -> bool:
        ...
    @property
    def n_ctx_train(self) -> int:
        ...
    @property
    def n_embd(self) -> int:
        ...
    @property
    def n_layer(self) -> int:
        ...
    @property
    def n_mtp_layers(self) -> int:
        ...
    @property
    def n_params(self) -> int:
        ...
    @property
    def n_vocab(self) -> int:
        ...
class ContextOptions:
    """
    How the engine's context is created (-c, -b, -ub, -t, -tb, -fa, -ctk, -ctv, -nkvo, -kvu).
    """
    cache_type_k: str
    cache_type_v: str
    flash_attn: str
    kv_unified: bool
    offload_kqv: bool
    def __init__(self) -> None:
        ...
    @property
    def n_batch(self) -> int:
        ...
    @n_batch.setter
    def n_batch(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_ctx(self) -> int:
        ...
    @n_ctx.setter
    def n_ctx(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_threads(self) -> int:
        ...
    @n_threads.setter
    def n_threads(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_threads_batch(self) -> int:
        ...
    @n_threads_batch.setter
    def n_threads_batch(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_ubatch(self) -> int:
        ...
    @n_ubatch.setter
    def n_ubatch(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class SpeculatorOptions:
    """
    Native speculator options (see llama_mtp.Speculator).
    """
    adaptive: bool
    cache_type_k: str
    cache_type_v: str
    cpu_moe: bool
    model_path: str
    type: str
    def __init__(self) -> None:
        ...
    @property
    def devices(self) -> list[str]:
        ...
    @devices.setter
    def devices(self, arg0: collections.abc.Sequence[str]) -> None:
        ...
    @property
    def gpu_layers(self) -> int:
        ...
    @gpu_layers.setter
    def gpu_layers(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_cpu_moe(self) -> int:
        ...
    @n_cpu_moe.setter
    def n_cpu_moe(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_max(self) -> int:
        ...
    @n_max.setter
    def n_max(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_min(self) -> int:
        ...
    @n_min.setter
    def n_min(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def ngram_min_hits(self) -> int:
        ...
    @ngram_min_hits.setter
    def ngram_min_hits(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def ngram_size_m(self) -> int:
        ...
    @ngram_size_m.setter
    def ngram_size_m(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def ngram_size_n(self) -> int:
        ...
    @ngram_size_n.setter
    def ngram_size_n(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def override_tensor(self) -> list[tuple[str, str]]:
        ...
    @override_tensor.setter
    def override_tensor(self, arg0: collections.abc.Sequence[tuple[str, str]]) -> None:
        ...
    @property
    def p_min(self) -> float:
        ...
    @p_min.setter
    def p_min(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class SamplingOptions:
    """
    Native sampling options (see llama_mtp.SamplingParams).
    """
    generation_prompt: str
    grammar: str
    ignore_eos: bool
    def __init__(self) -> None:
        ...
    @property
    def frequency_penalty(self) -> float:
        ...
    @frequency_penalty.setter
    def frequency_penalty(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def logit_bias(self) -> dict[int, float]:
        ...
    @logit_bias.setter
    def logit_bias(self, arg0: collections.abc.Mapping[typing.SupportsInt | typing.SupportsIndex, typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
    @property
    def logprobs(self) -> int:
        ...
    @logprobs.setter
    def logprobs(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def max_tokens(self) -> int:
        ...
    @max_tokens.setter
    def max_tokens(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def min_p(self) -> float:
        ...
    @min_p.setter
    def min_p(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def presence_penalty(self) -> float:
        ...
    @presence_penalty.setter
    def presence_penalty(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def reasoning_budget_end(self) -> list[list[int]]:
        ...
    @reasoning_budget_end.setter
    def reasoning_budget_end(self, arg0: collections.abc.Sequence[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]]) -> None:
        ...
    @property
    def reasoning_budget_forced(self) -> list[int]:
        ...
    @reasoning_budget_forced.setter
    def reasoning_budget_forced(self, arg0: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    @property
    def reasoning_budget_start(self) -> list[int]:
        ...
    @reasoning_budget_start.setter
    def reasoning_budget_start(self, arg0: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    @property
    def reasoning_budget_tokens(self) -> int:
        ...
    @reasoning_budget_tokens.setter
    def reasoning_budget_tokens(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def repeat_last_n(self) -> int:
        ...
    @repeat_last_n.setter
    def repeat_last_n(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def repeat_penalty(self) -> float:
        ...
    @repeat_penalty.setter
    def repeat_penalty(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def seed(self) -> int:
        ...
    @seed.setter
    def seed(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def stop(self) -> list[str]:
        ...
    @stop.setter
    def stop(self, arg0: collections.abc.Sequence[str]) -> None:
        ...
    @property
    def temperature(self) -> float:
        ...
    @temperature.setter
    def temperature(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def top_k(self) -> int:
        ...
    @top_k.setter
    def top_k(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def top_p(self) -> float:
        ...
    @top_p.setter
    def top_p(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def typical_p(self) -> float:
        ...
    @typical_p.setter
    def typical_p(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class TokenLogprob:
    """
    Native log-probability of one token (see llama_mtp.TokenLogprob).
    """
    @property
    def logprob(self) -> float:
        ...
    @property
    def token(self) -> int:
        ...
    @property
    def top(self) -> list[tuple[int, float]]:
        ...
class GenerationStats:
    """
    Native timings of one generation (see llama_mtp.GenerationStats).
    """
    @property
    def accepted_per_position(self) -> list[int]:
        ...
    @property
    def cache_n(self) -> int:
        ...
    @property
    def draft_len_histogram(self) -> list[int]:
        ...
    @property
    def draft_n(self) -> int:
        ...
    @property
    def draft_n_accepted(self) -> int:
        ...
    @property
    def num_drafts(self) -> int:
        ...
    @property
    def predicted_ms(self) -> float:
        ...
    @property
    def predicted_n(self) -> int:
        ...
    @property
    def prompt_ms(self) -> float:
        ...
    @property
    def prompt_n(self) -> int:
        ...
class GenerationResult:
    """
    Native result of one generation (see llama_mtp.GenerationOutput).
    """
    @property
    def finish_reason(self) -> str:
        ...
    @property
    def logprobs(self) -> list[TokenLogprob]:
        ...
    @property
    def stats(self) -> GenerationStats:
        ...
    @property
    def stop_reason(self) -> str:
        ...
    @property
    def text(self) -> str:
        ...
    @property
    def tokens(self) -> list[int]:
        ...
class CancelToken:
    """
    A flag that stops a running generation within one step: call cancel() from any thread.
    """
    def __init__(self) -> None:
        ...
    def cancel(self) -> None:
        ...
    @property
    def cancelled(self) -> bool:
        ...
class Request:
    """
    A submitted request: read its chunks (streams) or wait for its result.
    """
    def cancel(self) -> None:
        """
        Stop the request within one engine step.
        """
    def next_chunk(self, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> tuple[str, list[int], list[TokenLogprob]] | None:
        """
        The next (text, tokens, logprobs) chunk of a streamed request, or None once it has ended and every chunk was taken. Waits with the GIL released; raises TimeoutError after `timeout` seconds (ValueError for a negative or NaN one; infinity waits without limit).
        """
    def result(self, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> GenerationResult:
        """
        Waits for the request to end and returns its result (raises its error). Ctrl-C cancels the request and raises KeyboardInterrupt.
        """
    @property
    def done(self) -> bool:
        ...
    @property
    def pending(self) -> int:
        """
        Chunks produced and not yet taken.
        """
class EngineOptions:
    """
    Slots, queue and speculator of an engine.
    """
    speculator: SpeculatorOptions | None
    warmup: bool
    def __init__(self) -> None:
        ...
    @property
    def max_queue(self) -> int:
        ...
    @max_queue.setter
    def max_queue(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_parallel(self) -> int:
        ...
    @n_parallel.setter
    def n_parallel(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class EngineMetrics:
    """
    Native engine counters (see llama_mtp.EngineMetrics).
    """
    @property
    def decode_seconds_total(self) -> float:
        ...
    @property
    def draft_seconds_total(self) -> float:
        ...
    @property
    def kv_cache_tokens(self) -> int:
        ...
    @property
    def kv_cache_usage_ratio(self) -> float:
        ...
    @property
    def n_busy_slots_total(self) -> int:
        ...
    @property
    def n_decode_total(self) -> int:
        ...
    @property
    def n_draft_passes_total(self) -> int:
        ...
    @property
    def n_parallel(self) -> int:
        ...
    @property
    def prompt_seconds_total(self) -> float:
        ...
    @property
    def prompt_tokens_total(self) -> int:
        ...
    @property
    def requests_deferred(self) -> int:
        ...
    @property
    def requests_finished_total(self) -> int:
        ...
    @property
    def requests_processing(self) -> int:
        ...
    @property
    def spec_decode_num_accepted_tokens(self) -> int:
        ...
    @property
    def spec_decode_num_accepted_tokens_per_pos(self) -> list[int]:
        ...
    @property
    def spec_decode_num_draft_tokens(self) -> int:
        ...
    @property
    def spec_decode_num_drafts(self) -> int:
        ...
    @property
    def tokens_predicted_seconds_total(self) -> float:
        ...
    @property
    def tokens_predicted_total(self) -> int:
        ...
class Engine:
    """
    Sequence slots in one context and the scheduler thread that batches their requests.
    """
    def __init__(self, model: Model, context: ContextOptions, options: EngineOptions) -> None:
        ...
    def close(self) -> None:
        """
        Cancel every request (they raise ModelClosedError) and join the scheduler thread.
        """
    def metrics(self) -> EngineMetrics:
        ...
    def reset_cache(self) -> None:
        """
        Forget every slot's cached prompt.
        """
    def submit(self, prompt: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], sampling: SamplingOptions, speculator: SpeculatorOptions, cache_prompt: bool = True, stream: bool = False, cancel: CancelToken | None = None) -> Request:
        """
        Validate and queue a request; raises before any work for bad input or a full queue.
        """
    @property
    def closed(self) -> bool:
        ...
    @property
    def n_ctx(self) -> int:
        ...
    @property
    def n_ctx_seq(self) -> int:
        ...
    @property
    def n_parallel(self) -> int:
        ...
class _StepCosts:
    pair_ticks: typing.ClassVar[int] = 4
    recent_ticks: typing.ClassVar[int] = 32
    stale_after: typing.ClassVar[int] = 1024
    window: typing.ClassVar[int] = 16
    def __init__(self) -> None:
        ...
    def add(self, rows: typing.SupportsInt | typing.SupportsIndex, seconds: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def ratio(self, rows: typing.SupportsInt | typing.SupportsIndex, ref: typing.SupportsInt | typing.SupportsIndex) -> float:
        ...
    def reference(self) -> int:
        ...
    def samples(self, rows: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def seconds(self, rows: typing.SupportsInt | typing.SupportsIndex) -> float:
        ...
    def tick(self) -> None:
        ...
class _DraftCosts:
    def __init__(self) -> None:
        ...
    def add(self, depth: typing.SupportsInt | typing.SupportsIndex, seconds: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def samples(self, depth: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def seconds(self, depth: typing.SupportsInt | typing.SupportsIndex) -> float:
        ...
    def tick(self) -> None:
        ...
class _DraftController:
    leave_margin: typing.ClassVar[float] = 0.1
    trusted_after: typing.ClassVar[int] = 6
    def __init__(self, n_max: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def choose(self, step_seconds: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], draft_seconds: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], depth: typing.SupportsInt | typing.SupportsIndex, other_rows: typing.SupportsInt | typing.SupportsIndex, measurements: typing.SupportsInt | typing.SupportsIndex | None = None) -> tuple[int, bool]:
        ...
    def observe(self, token: typing.SupportsInt | typing.SupportsIndex) -> tuple[int, int]:
        ...
    def start_probe(self, draft: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def verified(self, drafted: typing.SupportsInt | typing.SupportsIndex, accepted: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def acceptance(self) -> list[float]:
        ...
    @property
    def probing(self) -> bool:
        ...
class ChatToolCall:
    """
    A tool call parsed from the model's reply.
    """
    @property
    def arguments(self) -> str:
        ...
    @property
    def id(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
class ChatParsed:
    """
    A reply split into content, reasoning and tool calls.
    """
    @property
    def content(self) -> str:
        ...
    @property
    def reasoning_content(self) -> str:
        ...
    @property
    def tool_calls(self) -> list[ChatToolCall]:
        ...
class ChatPrompt:
    """
    A rendered chat prompt and the parser of its reply.
    """
    def constrain(self, sampling: SamplingOptions) -> None:
        """
        Put the template's grammar (if any) and generation prompt into the sampling options.
        """
    def parse(self, text: str, partial: bool) -> ChatParsed:
        ...
    @property
    def additional_stops(self) -> list[str]:
        ...
    @property
    def generation_prompt(self) -> str:
        ...
    @property
    def grammar(self) -> str:
        ...
    @property
    def grammar_lazy(self) -> bool:
        ...
    @property
    def grammar_triggers(self) -> list[str]:
        """
        The texts (words or regex patterns) that start a lazy grammar.
        """
    @property
    def json_format(self) -> bool:
        ...
    @property
    def prompt(self) -> str:
        ...
    @property
    def supports_thinking(self) -> bool:
        ...
    @property
    def thinking_end_tags(self) -> list[str]:
        ...
    @property
    def thinking_start_tag(self) -> str:
        ...
class ChatDelta:
    """
    A streamed piece of a reply (see llama_mtp.ChatDelta).
    """
    @property
    def content(self) -> str:
        ...
    @property
    def reasoning_content(self) -> str:
        ...
    @property
    def tool_call_arguments(self) -> str:
        ...
    @property
    def tool_call_id(self) -> str:
        ...
    @property
    def tool_call_index(self) -> int:
        ...
    @property
    def tool_call_name(self) -> str:
        ...
class ChatStreamParser:
    """
    Parses a streamed reply into deltas (llama.cpp's common_chat_msg_diff).
    """
    def __init__(self, prompt: ChatPrompt) -> None:
        ...
    def message(self) -> ChatParsed:
        ...
    def push(self, text: str, final: bool) -> list[ChatDelta]:
        ...
class ChatTemplates:
    """
    The model's chat template (llama.cpp common chat).
    """
    def __init__(self, model: Model, override_template: str) -> None:
        ...
    def apply(self, messages_json: str, tools_json: str, tool_choice: str, json_schema: str, enable_thinking: bool, add_generation_prompt: bool) -> ChatPrompt:
        ...
class _PromptCacheProbe:
    """
    csrc/prompt_cache.h for tests: two sequences' caches on a real context.
    """
    def __init__(self, model: Model, n_ctx: typing.SupportsInt | typing.SupportsIndex, max_checkpoints: typing.SupportsInt | typing.SupportsIndex = 3) -> None:
        ...
    def checkpoint(self, seq: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def clear(self, seq: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def common_prefix(self, seq: typing.SupportsInt | typing.SupportsIndex, prompt: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> int:
        ...
    def feed(self, seq: typing.SupportsInt | typing.SupportsIndex, tokens: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def pos_max(self, seq: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def recurrent(self) -> bool:
        ...
    def reuse(self, seq: typing.SupportsInt | typing.SupportsIndex, prompt: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> int:
        ...
    def tokens(self, seq: typing.SupportsInt | typing.SupportsIndex) -> list[int]:
        ...
class _TextStream:
    """
    csrc/text_stream.h for tests: token pieces in, text safe to release out.
    """
    def __init__(self, stops: collections.abc.Sequence[str]) -> None:
        ...
    def flush(self) -> bytes:
        ...
    def push(self, piece: bytes) -> bytes:
        ...
    @property
    def matched_stop(self) -> bytes:
        ...
    @property
    def stopped(self) -> bool:
        ...
    @property
    def text(self) -> bytes:
        ...
def _acceptance_after(n_max: typing.SupportsInt | typing.SupportsIndex, prior: typing.SupportsFloat | typing.SupportsIndex, weight: typing.SupportsFloat | typing.SupportsIndex, steps: collections.abc.Sequence[tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]]) -> list[float]:
    ...
def _best_draft_depth(p: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], step_seconds: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], draft_seconds: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], max_depth: typing.SupportsInt | typing.SupportsIndex, plain_step_seconds: typing.SupportsFloat | typing.SupportsIndex | None = None) -> int:
    ...
def _best_draft_length(p: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], step_seconds: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], draft_seconds: typing.SupportsFloat | typing.SupportsIndex, other_rows: typing.SupportsInt | typing.SupportsIndex, n_max: typing.SupportsInt | typing.SupportsIndex) -> int:
    ...
def _expected_tokens(p: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], k: typing.SupportsInt | typing.SupportsIndex) -> float:
    ...
def _utf8_complete_prefix(text: bytes, end: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    csrc/text_stream.h for tests: the length of text[:end] without a trailing incomplete character.
    """
def begin_shutdown() -> None:
    """
    Called by llama_mtp's exit hook: from now on, threads waiting in native code never re-take the GIL (they park until the process ends).
    """
def buffer_type_names() -> list[str]:
    """
    Buffer types an override_tensor pattern may name on this machine (every device's default buffer type; an RPC server's, 'RPC0[host:port]', once a model uses it).
    """
def init_backend(backend_dir: str) -> None:
    """
    Initialise llama.cpp's backends once (loads run-time backends from backend_dir).
    """
def json_schema_to_grammar(schema_json: str) -> str:
    """
    GBNF grammar accepting exactly the JSON documents valid under a JSON schema (given as JSON text), by llama.cpp's common/json-schema-to-grammar. Raises ValueError for invalid or unsupported schemas.
    """
def quantization_types() -> list[str]:
    """
    Quantization type names accepted by quantize().
    """
def quantize(src: str, dst: str, type: str, threads: typing.SupportsInt | typing.SupportsIndex = 0, allow_requantize: bool = False) -> None:
    """
    Quantize a GGUF model file with llama.cpp's quantizer.
    """
def read_gguf(path: str, max_array_items: typing.SupportsInt | typing.SupportsIndex = 18446744073709551615) -> dict[str, typing.Any]:
    """
    Parse and validate a GGUF file without loading weights (header, metadata, tensors).
    """
def rpc_serve(host: str, port: typing.SupportsInt | typing.SupportsIndex, cache_dir: str, n_threads: typing.SupportsInt | typing.SupportsIndex, devices: collections.abc.Sequence[str]) -> None:
    """
    Serve ggml-rpc clients on host:port until the process ends (llama.cpp's rpc-server); raises if it cannot listen.
    """
def rpc_server_devices(endpoint: str) -> list[dict[str, typing.Any]]:
    """
    The devices an RPC server offers (connects to it).
    """
def set_log_sink(sink: typing.Any, min_level: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Route llama.cpp's log lines at or above min_level (Python logging level) to sink(level, msg).
    """
def speculator_types() -> list[str]:
    """
    Speculator types llama-mtp runs (llama.cpp's names).
    """
def system_info() -> dict[str, typing.Any]:
    """
    Backends, devices and build facts of this llama.cpp build, as a dict.
    """
def validate_context(options: ContextOptions, n_parallel: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Raise ValueError for invalid context options.
    """
def validate_sampling(options: SamplingOptions) -> None:
    """
    Raise ValueError naming the first invalid sampling value.
    """
def validate_speculator(options: SpeculatorOptions) -> None:
    """
    Raise ValueError (FileNotFoundError for a missing model file) for invalid speculator options.
    """
