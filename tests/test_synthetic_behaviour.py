"""Synthetic models behave as designed: greedy output known in advance after any prompt,
MTP acceptance as configured, margins that survive quantization, a chat-style model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from llama_mtp import Model
from llama_mtp.synthetic import (CHAT_SCRIPT, TEXT_SCRIPT, Behaviour, expected_continuation,
                                 load_vocab, make_behaviour, read_behaviour)
from llama_mtp.synthetic.behaviour import disagreement_positions

from .synthetic_gen import generate

PROMPTS = ["Once upon a time", "def main():\n    print(", "你好，世界", " The", "1234", "。"]


def _tokens(path: Path, text: str) -> list[int]:
    with Model(path, vocab_only=True) as m:
        return m.tokenize(text, parse_special=True)


# -- the design, without running a model ---------------------------------------------------------

@pytest.mark.parametrize("agreement", [0.0, 0.3, 0.5, 0.65, 0.8, 0.9, 1.0])
def test_simulated_acceptance_from_every_start(agreement: float) -> None:
    beh = make_behaviour("text", load_vocab(), agreement)
    rates = [beh.acceptance(t, 257, 1).rate for t in list(beh.script) + [0, 12345]]
    tol = 0.02 if agreement in (0.0, 0.5, 0.8, 1.0) else 0.05
    assert max(abs(r - agreement) for r in rates) <= tol


def test_disagreement_set_is_deterministic() -> None:
    assert disagreement_positions(81, 0.8, 0) == disagreement_positions(81, 0.8, 0)
    assert len(disagreement_positions(81, 0.8, 0)) == 81 - round(0.8 * 81)
    assert disagreement_positions(81, 1.0) == frozenset()
    assert disagreement_positions(81, 0.0) == frozenset(range(81))
    with pytest.raises(ValueError):
        disagreement_positions(81, 1.5)


def test_scripts_are_distinct_tokens() -> None:
    vocab = load_vocab()
    text = make_behaviour("text", vocab)
    chat = make_behaviour("chat", vocab)
    assert text.n == 81 and len(set(text.script)) == 81
    assert chat.script[-1] == vocab.eos_id and vocab.special_ids["</think>"] in chat.script
    cont = chat.continuation([198], 100)           # after "<think>\n"
    assert cont[-1] == vocab.eos_id and len(cont) == chat.n


# -- running the models --------------------------------------------------------------------------

def test_greedy_output_is_known(tiny_model_path: Path) -> None:
    beh = read_behaviour(tiny_model_path)
    for text in PROMPTS:
        prompt = _tokens(tiny_model_path, text)
        assert generate(tiny_model_path, prompt, 64).tokens == \
            expected_continuation(tiny_model_path, prompt, 64), text
    with Model(tiny_model_path, vocab_only=True) as m:
        assert m.detokenize(beh.continuation(m.tokenize("x"), 81)) == TEXT_SCRIPT


@pytest.mark.parametrize("kind", ["random", "script-repeat", "one-token"])
def test_greedy_output_after_an_8000_token_prompt(tiny_model_path: Path, kind: str) -> None:
    beh = read_behaviour(tiny_model_path)
    rng = random.Random(kind)
    if kind == "random":
        prompt = [rng.randrange(0, 248044) for _ in range(8000)]
    elif kind == "script-repeat":
        prompt = (list(beh.script) * 100)[:8000 - 7]
    else:
        prompt = [279] * 8000
    assert generate(tiny_model_path, prompt, 32).tokens == beh.continuation(prompt, 32)


@pytest.mark.parametrize("agreement", [0.0, 0.5, 0.8, 1.0])
def test_mtp_acceptance_matches_agreement(synthetic_model, agreement: float) -> None:  # type: ignore[no-untyped-def]
    path = synthetic_model(mtp_agreement=agreement)
    beh = read_behaviour(path)
    prompt = _tokens(path, "Once upon a time")
    run = generate(path, prompt, 256, n_max=1)
    assert run.tokens == beh.continuation(prompt, 256)     # speculation never changes output
    assert run.drafted > 100
    assert abs(run.acceptance - agreement) <= 0.05, run.acceptance


@pytest.mark.parametrize("n_max", [2, 3])
def test_mtp_acceptance_for_longer_drafts_follows_the_simulation(tiny_model_path: Path,
                                                                 n_max: int) -> None:
    beh = read_behaviour(tiny_model_path)
    prompt = _tokens(tiny_model_path, "Once upon a time")
    run = generate(tiny_model_path, prompt, 256, n_max=n_max)
    assert run.tokens == beh.continuation(prompt, 256)
    assert abs(run.acceptance - beh.acceptance(prompt[-1], 256, n_max).rate) <= 0.05


@pytest.mark.parametrize("quant", ["Q8_0", "Q6_K", "Q4_K_M", "Q2_K"])
def test_greedy_output_survives_quantization(synthetic_model, quant: str) -> None:  # type: ignore[no-untyped-def]
    """Variants made with ``llama_mtp.quantize`` from the F16 model keep the first 64 tokens."""
    path = synthetic_model(quant=quant, requantize_from="F16")
    for text in PROMPTS[:4]:
        prompt = _tokens(path, text)
        assert generate(path, prompt, 64).tokens == expected_continuation(path, prompt, 64), text


def test_directly_written_q4_k_m(synthetic_model) -> None:  # type: ignore[no-untyped-def]
    """The numpy block writer (used for the 27B preset) gives the same behaviour."""
    path = synthetic_model(quant="Q4_K_M", method="direct")
    prompt = _tokens(path, "Once upon a time")
    run = generate(path, prompt, 128, n_max=1)
    assert run.tokens == expected_continuation(path, prompt, 128)
    assert abs(run.acceptance - 0.8) <= 0.05


def test_chat_model_thinks_then_answers(chat_model_path: Path) -> None:
    opener = "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n<think>\n"
    prompt = _tokens(chat_model_path, opener)
    run = generate(chat_model_path, prompt, 64, ignore_eos=False)
    with Model(chat_model_path, vocab_only=True) as m:
        text = m.detokenize(run.tokens)
        assert text == CHAT_SCRIPT
        assert run.tokens[-1] == m.eos
    reasoning, answer = text.split("</think>")
    assert reasoning.strip() and answer.strip().endswith("<|im_end|>")
    # with thinking disabled the template closes the block itself: answer only
    prompt = _tokens(chat_model_path, opener + "\n</think>\n\n")
    with Model(chat_model_path, vocab_only=True) as m:
        answer_only = m.detokenize(generate(chat_model_path, prompt, 64, ignore_eos=False).tokens)
    assert answer_only == CHAT_SCRIPT.split("</think>\n\n")[1]


def test_model_without_mtp(tiny_nomtp_path: Path) -> None:
    with Model(tiny_nomtp_path, n_gpu_layers=0) as m:
        assert not m.has_mtp and m.n_mtp_layers == 0 and m.n_layer == 4
    prompt = _tokens(tiny_nomtp_path, "Once upon a time")
    assert generate(tiny_nomtp_path, prompt, 32).tokens == \
        expected_continuation(tiny_nomtp_path, prompt, 32)
    assert not read_behaviour(tiny_nomtp_path).has_mtp


@pytest.mark.slow
def test_bench_preset(synthetic_model) -> None:  # type: ignore[no-untyped-def]
    path = synthetic_model(preset="bench", quant="Q4_K_M")
    with Model(path, vocab_only=True) as m:
        assert m.n_vocab == 32768
    prompt = _tokens(path, "Once upon a time")
    run = generate(path, prompt, 24, n_max=1)
    assert run.tokens == expected_continuation(path, prompt, 24)


def test_behaviour_round_trip(tiny_model_path: Path) -> None:
    beh = read_behaviour(tiny_model_path)
    assert isinstance(beh, Behaviour) and beh.kind == "text" and beh.mtp_agreement == 0.8
    assert beh.script == make_behaviour("text", load_vocab(), 0.8).script
