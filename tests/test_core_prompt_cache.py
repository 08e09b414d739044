"""C++ unit tests of csrc/prompt_cache.* (per-sequence prefix reuse, recurrent checkpoints) on a
real context of the synthetic qwen35 model, driven through ``_core._PromptCacheProbe``
(csrc/bindings_testing.cpp)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from llama_mtp import Model, _core

ModelFactory = Callable[..., Path]
TOKENS = list(range(1000, 1016))


@pytest.fixture(scope="module")
def model(synthetic_model: ModelFactory) -> Model:
    with Model(synthetic_model(vocab_size=4096), n_ctx=256, n_threads=1) as m:
        yield m


def probe(model: Model, max_checkpoints: int = 3) -> _core._PromptCacheProbe:
    return _core._PromptCacheProbe(model._native, 256, max_checkpoints)


def test_the_hybrid_model_needs_checkpoints(model: Model) -> None:
    assert probe(model).recurrent()  # qwen35: Gated DeltaNet layers cannot be truncated


def test_a_prompt_that_extends_the_cache_keeps_it_all(model: Model) -> None:
    p = probe(model)
    p.feed(0, TOKENS[:8])
    assert p.common_prefix(0, TOKENS) == 8
    assert p.reuse(0, TOKENS) == 8 and p.tokens(0) == TOKENS[:8] and p.pos_max(0) == 7


def test_divergence_goes_back_to_the_newest_checkpoint_before_it(model: Model) -> None:
    p = probe(model)
    p.feed(0, TOKENS[:4])
    p.checkpoint(0)
    p.feed(0, TOKENS[4:8])
    p.checkpoint(0)
    p.feed(0, TOKENS[8:12])
    other = TOKENS[:10] + [2000, 2001]  # shares 10 tokens
    assert p.reuse(0, other) == 8
    assert p.tokens(0) == TOKENS[:8] and p.pos_max(0) == 7
    p.feed(0, other[8:])  # and it goes on from there
    assert p.tokens(0) == other


def test_without_a_checkpoint_before_the_divergence_everything_is_evaluated_again(model: Model) -> None:
    p = probe(model)
    p.feed(0, TOKENS[:6])
    p.checkpoint(0)
    p.feed(0, TOKENS[6:12])
    assert p.reuse(0, TOKENS[:3] + [2000]) == 0
    assert p.tokens(0) == [] and p.pos_max(0) == -1


def test_the_same_prompt_again_leaves_its_last_token_to_evaluate(model: Model) -> None:
    p = probe(model)
    p.feed(0, TOKENS[:11])
    p.checkpoint(0)  # before the last token, as the engine does
    p.feed(0, TOKENS[11:12])
    assert p.reuse(0, TOKENS[:12]) == 11 and p.pos_max(0) == 10


def test_sequences_are_independent(model: Model) -> None:
    p = probe(model)
    p.feed(0, TOKENS[:5])
    p.feed(1, TOKENS[:7])
    p.clear(0)
    assert p.tokens(0) == [] and p.pos_max(0) == -1
    assert p.tokens(1) == TOKENS[:7] and p.pos_max(1) == 6
    assert p.reuse(1, TOKENS) == 7


def test_old_checkpoints_are_dropped(model: Model) -> None:
    p = probe(model, max_checkpoints=2)
    for end in (2, 4, 6):
        p.feed(0, TOKENS[end - 2:end])
        p.checkpoint(0)
    p.feed(0, TOKENS[6:8])
    # the checkpoint at 2 was dropped for the one at 6: a divergence at 3 starts over
    assert p.reuse(0, TOKENS[:3] + [2000]) == 0
    p.feed(0, TOKENS[:4])
    p.checkpoint(0)
    p.feed(0, TOKENS[4:8])
    assert p.reuse(0, TOKENS[:5] + [2000]) == 4


def test_a_bad_sequence_is_a_value_error(model: Model) -> None:
    with pytest.raises(ValueError, match="seq"):
        probe(model).tokens(2)
