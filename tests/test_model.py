"""Model loading, metadata and tokenizer on a synthetic Qwen3.6-architecture model."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest

from llama_mtp import Model, ModelClosedError

TEXTS = ["hello world", "你好, world", "日本語のテキストです。", "emoji 🦊🚀 and 👩‍👩‍👧",
         "  spaces\tand\nnewlines  ", "code: def f(x): return x ** 2  # 42", "Ünïcödé ß ça"]


@pytest.fixture(scope="module")
def model(tiny_model_path: Path) -> Model:
    with Model(tiny_model_path, n_ctx=512, n_threads=1) as m:
        yield m


def test_description(model: Model) -> None:
    assert model.arch == "qwen35"
    assert model.n_layer == 4 and model.n_mtp_layers == 1
    assert model.has_mtp and model.mtp_loaded and model.mtp_status.complete
    assert model.n_vocab == 248320
    assert model.n_ctx_train == int(model.metadata["qwen35.context_length"])  # type: ignore[arg-type]
    assert model.n_params > 100_000_000 and model.size_bytes > 0
    assert "qwen35" in repr(model) and "has_mtp=True" in repr(model)


def test_metadata_types(model: Model) -> None:
    md = model.metadata
    assert md["general.architecture"] == "qwen35"
    assert md["qwen35.block_count"] == 5 and md["qwen35.nextn_predict_layers"] == 1
    assert isinstance(md["qwen35.attention.layer_norm_rms_epsilon"], float)
    tokens = md["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list) and len(tokens) == model.n_vocab
    assert md["tokenizer.ggml.pre"] == "qwen35"
    assert isinstance(model.chat_template, str) and "<|im_start|>" in model.chat_template


@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_round_trip(model: Model, text: str) -> None:
    tokens = model.tokenize(text)
    assert tokens and all(0 <= t < model.n_vocab for t in tokens)
    assert model.detokenize(tokens) == text
    assert b"".join(model.token_to_piece(t) for t in tokens) == text.encode("utf-8")


def test_special_tokens(model: Model) -> None:
    im_end = model.tokenize("<|im_end|>", parse_special=True)
    assert len(im_end) == 1
    assert model.is_eog(im_end[0])
    assert model.eos is not None and model.is_eog(model.eos)
    assert model.tokenize("<|im_end|>", parse_special=False) != im_end
    assert not model.is_eog(model.tokenize("hello")[0])
    assert model.detokenize(im_end) == "<|im_end|>"
    assert model.detokenize(im_end, unparse_special=False) == ""


def test_bad_token_ids(model: Model) -> None:
    with pytest.raises(ValueError, match="out of range"):
        model.detokenize([model.n_vocab])
    with pytest.raises(ValueError):
        model.token_to_piece(-1)
    assert not model.is_eog(10**9)
    with pytest.raises(TypeError):
        model.tokenize(123)  # type: ignore[arg-type]


def test_vocab_only(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, vocab_only=True) as vocab:
        assert vocab.tokenize("你好") and vocab.n_vocab == 248320
        with pytest.raises(ValueError, match="vocab_only"):
            vocab.generate("hi")


def test_close(tiny_model_path: Path) -> None:
    m = Model(tiny_model_path, n_ctx=256)
    assert not m.closed
    m.close()
    assert m.closed and "closed" in repr(m)
    with pytest.raises(ModelClosedError):
        _ = m.n_vocab
    m.close()  # idempotent


def test_load_mtp_false_skips_the_head(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, load_mtp=False, n_ctx=256) as m:
        assert m.has_mtp and not m.mtp_loaded


@pytest.mark.skipif(sys.platform == "win32", reason="an open file cannot be removed")
def test_mtp_status_and_metadata_come_from_the_loaded_file(
        synthetic_model: Callable[..., Path], tmp_path: Path) -> None:
    """has_mtp / mtp_status / metadata use what was read at load time: the file is not read
    again (here it is gone)."""
    copy = tmp_path / "model.gguf"
    shutil.copyfile(synthetic_model(vocab_size=4096), copy)
    with Model(copy, vocab_only=True) as m:
        copy.unlink()
        assert m.has_mtp and m.mtp_status.mtp_blocks == [4] and not m.mtp_status.missing_tensors
        assert m.metadata["qwen35.nextn_predict_layers"] == 1
        assert len(m.metadata["tokenizer.ggml.tokens"]) == 4096  # type: ignore[arg-type]
