"""
llama-mtp native core: llama.cpp with MTP speculative decoding.
"""
from __future__ import annotations
import collections.abc
import typing
__all__: list[str] = ['Model', 'ModelOptions', 'init_backend', 'quantization_types', 'quantize', 'read_gguf', 'set_log_sink', 'system_info']
class ModelOptions:
    """
    Options for loading a model.
    """
    check_tensors: bool
    load_mtp: bool | None
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
    def n_gpu_layers(self) -> int:
        ...
    @n_gpu_layers.setter
    def n_gpu_layers(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
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
    def is_eog(self, token: typing.SupportsInt | typing.SupportsIndex) -> bool:
        ...
    def metadata(self) -> list[tuple[str, typing.Any]]:
        ...
    def token_to_piece(self, token: typing.SupportsInt | typing.SupportsIndex, special: bool) -> bytes:
        ...
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        ...
    @property
    def add_bos(self) -> bool:
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
    @property
    def path(self) -> str:
        ...
def init_backend(backend_dir: str) -> None:
    """
    Initialise llama.cpp's backends once (loads run-time backends from backend_dir).
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
def set_log_sink(sink: typing.Any, min_level: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Route llama.cpp's log lines at or above min_level (Python logging level) to sink(level, msg).
    """
def system_info() -> dict[str, typing.Any]:
    """
    Backends, devices and build facts of this llama.cpp build, as a dict.
    """
