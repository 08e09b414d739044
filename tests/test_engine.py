"""The generation engine on synthetic models: lossless MTP, stats, streaming, stops, prefix reuse,
context limits, cancellation, concurrency, and errors."""

from __future__ import annotations

import asyncio
import _thread
import re
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from llama_mtp import _core
from llama_mtp import (CancelToken, ContextOverflowError, Model, MTPUnavailableError, SamplingParams,
                       Speculator, synthetic)

ModelFactory = Callable[..., Path]
PROMPT = "Hello there. The quick brown"


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> Model:
    with Model(tiny_model_path, n_ctx=12288, n_threads=1, n_batch=2048, n_ubatch=512) as model:
        yield model


def greedy(n: int, **kw: object) -> SamplingParams:
    return SamplingParams.greedy(max_tokens=n, **kw)  # type: ignore[arg-type]


def test_plain_greedy_matches_the_known_continuation(tiny: Model, tiny_model_path: Path) -> None:
    tokens = tiny.tokenize(PROMPT)
    out = tiny.generate(tokens, greedy(48))
    assert out.tokens == synthetic.expected_continuation(tiny_model_path, tokens, 48)
    assert out.finish_reason == "length"
    assert out.text == tiny.detokenize(out.tokens)


@pytest.mark.parametrize("speculator", [None, Speculator.mtp(2)])
def test_the_warm_up_at_load_leaves_nothing_behind(tiny_model_path: Path, speculator: Speculator | None) -> None:
    """The context is made at load and warmed with one throwaway decode (llama.cpp's default): the
    first request then finds an empty cache and gives what a model loaded without it gives."""
    outs = []
    for warmup in (True, False):
        with Model(tiny_model_path, n_ctx=1024, n_threads=1, warmup=warmup, speculator=speculator) as model:
            assert model.metrics().requests_finished_total == 0
            out = model.generate(PROMPT, greedy(24))
            assert out.stats.cache_n == 0 and out.stats.prompt_n == len(model.tokenize(PROMPT))
            outs.append(out.tokens)
    assert outs[0] == outs[1]


@pytest.mark.parametrize("agreement", [0.0, 0.5, 0.8, 1.0])
def test_mtp_is_lossless_at_every_agreement(synthetic_model: ModelFactory, agreement: float) -> None:
    path = synthetic_model(mtp_agreement=agreement)
    with Model(path, n_ctx=1024, n_threads=1) as model:
        base = model.generate(PROMPT, greedy(64))
        for n_max in (1, 2, 3):
            out = model.generate(PROMPT, greedy(64), speculator=Speculator.mtp(n_max=n_max))
            assert out.tokens == base.tokens, f"agreement {agreement}, n_max {n_max}"
            assert out.text == base.text
            s = out.stats
            assert s.num_drafts > 0 and s.draft_n >= s.draft_n_accepted >= 0
            assert len(s.accepted_per_position) == n_max
            if agreement == 1.0:
                assert s.draft_acceptance_rate > 0.95
            if agreement == 0.0:
                assert s.draft_n_accepted == 0


@pytest.mark.parametrize("quant", ["Q8_0", "Q6_K", "Q4_K_M", "Q2_K"])
def test_mtp_is_lossless_for_every_quantization(synthetic_model: ModelFactory, quant: str) -> None:
    path = synthetic_model(quant=quant)
    with Model(path, n_ctx=1024, n_threads=1) as model:
        tokens = model.tokenize(PROMPT)
        base = model.generate(tokens, greedy(64))
        assert base.tokens == synthetic.expected_continuation(path, tokens, 64)
        for n_max in (1, 2, 3):
            assert model.generate(tokens, greedy(64), speculator=Speculator.mtp(n_max)).tokens == base.tokens


def test_mtp_is_lossless_after_a_long_prompt(tiny: Model, tiny_model_path: Path) -> None:
    words = "Rivers, bridges and harvests fill the old archive of the town. "
    tokens = tiny.tokenize(words * 700)
    assert len(tokens) > 8000
    expected = synthetic.expected_continuation(tiny_model_path, tokens, 32)
    base = tiny.generate(tokens, greedy(32), cache_prompt=False)
    assert base.tokens == expected
    assert base.stats.prompt_n == len(tokens)
    for n_max in (1, 2, 3):
        out = tiny.generate(tokens, greedy(32), speculator=Speculator.mtp(n_max), cache_prompt=False)
        assert out.tokens == expected


def test_acceptance_tracks_agreement(synthetic_model: ModelFactory) -> None:
    for agreement in (0.0, 0.5, 0.8, 1.0):
        with Model(synthetic_model(mtp_agreement=agreement), n_ctx=1024, n_threads=1) as model:
            out = model.generate(PROMPT, greedy(256), speculator=Speculator.mtp(n_max=1))
            assert abs(out.stats.draft_acceptance_rate - agreement) <= 0.05, (agreement, out.stats)


def test_stats_are_consistent(tiny: Model) -> None:
    out = tiny.generate(PROMPT, greedy(40), speculator=Speculator.mtp(2), cache_prompt=False)
    s = out.stats
    assert s.predicted_n == len(out.tokens) == 40
    assert s.prompt_n == len(tiny.tokenize(PROMPT)) and s.cache_n == 0
    assert s.prompt_ms > 0 and s.predicted_ms > 0
    assert s.prompt_per_second > 0 and s.predicted_per_second > 0
    assert s.draft_n >= s.draft_n_accepted
    assert s.mean_acceptance_length == pytest.approx(1 + s.draft_n_accepted / s.num_drafts)
    assert sum(s.accepted_per_position) == s.draft_n_accepted
    d = s.to_dict()
    for key in ("prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms",
                "predicted_per_second", "cache_n", "draft_n", "draft_n_accepted", "num_drafts",
                "mean_acceptance_length", "acceptance_per_position"):
        assert key in d
    plain = tiny.generate(PROMPT, greedy(8)).stats
    assert plain.draft_n == plain.num_drafts == 0 and plain.mean_acceptance_length == 0.0


def test_vllm_speculative_config_dict(tiny: Model) -> None:
    a = tiny.generate(PROMPT, greedy(24), speculator={"method": "mtp", "num_speculative_tokens": 2})
    assert a.stats.num_drafts > 0 and len(a.stats.accepted_per_position) == 2
    with pytest.raises(ValueError, match="unsupported speculative_config"):
        tiny.generate(PROMPT, greedy(4), speculator={"method": "mtp", "bogus": 1})


def test_streaming_equals_generate(tiny: Model) -> None:
    for spec in (Speculator.none(), Speculator.mtp(3)):
        full = tiny.generate(PROMPT, greedy(60), speculator=spec)
        stream = tiny.stream(PROMPT, greedy(60), speculator=spec)
        chunks = list(stream)
        assert "".join(c.text for c in chunks) == full.text
        assert [t for c in chunks for t in c.tokens] == full.tokens
        assert stream.output is not None and stream.output.tokens == full.tokens


def test_stream_text_is_valid_utf8_at_every_chunk(tiny: Model) -> None:
    """The cycle contains Chinese text; every chunk must decode without replacement characters."""
    out = tiny.generate(PROMPT, greedy(200))
    assert "没有人知道答案" in out.text
    for spec in (Speculator.none(), Speculator.mtp(2)):
        for chunk in tiny.stream(PROMPT, greedy(200), speculator=spec):
            assert "\ufffd" not in chunk.text
            chunk.text.encode("utf-8")


def test_async_stream(tiny: Model) -> None:
    async def collect() -> tuple[str, int]:
        ticks = 0
        text = ""

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        async for chunk in tiny.astream(PROMPT, greedy(60), speculator=Speculator.mtp(2)):
            text += chunk.text
        task.cancel()
        return text, ticks

    text, ticks = asyncio.run(collect())
    assert text == tiny.generate(PROMPT, greedy(60)).text
    assert ticks > 1  # the event loop kept running during generation


def test_stop_strings(tiny: Model) -> None:
    full = tiny.generate(PROMPT, greedy(60)).text
    assert "lazy dog" in full
    for spec in (Speculator.none(), Speculator.mtp(3)):
        out = tiny.generate(PROMPT, greedy(60, stop=["lazy dog"]), speculator=spec)
        assert out.finish_reason == "stop" and out.stop_reason == "lazy dog"
        assert out.text == full[: full.index("lazy dog")]
        streamed = "".join(c.text for c in tiny.stream(PROMPT, greedy(60, stop=["lazy dog"]), speculator=spec))
        assert streamed == out.text


def test_seeded_sampling_is_reproducible(tiny: Model) -> None:
    params = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=1234, max_tokens=32)
    a = tiny.generate(PROMPT, params)
    b = tiny.generate(PROMPT, params)
    assert a.tokens == b.tokens
    c = tiny.generate(PROMPT, params, speculator=Speculator.mtp(2))
    assert len(c.tokens) == 32


def test_prefix_reuse(tiny: Model) -> None:
    tiny.reset_cache()
    first = tiny.generate(PROMPT, greedy(16))
    assert first.stats.cache_n == 0
    follow = tiny.tokenize(PROMPT) + first.tokens + tiny.tokenize(" And then")
    second = tiny.generate(follow, greedy(8))
    assert second.stats.cache_n >= len(tiny.tokenize(PROMPT)) + len(first.tokens) - 1
    assert second.stats.prompt_n == len(follow) - second.stats.cache_n
    again = tiny.generate(follow, greedy(8))
    assert again.stats.cache_n == len(follow) - 1 and again.tokens == second.tokens
    cold = tiny.generate(follow, greedy(8), cache_prompt=False)
    assert cold.stats.cache_n == 0 and cold.tokens == second.tokens


def test_context_overflow_and_length(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_ctx=64, n_threads=1) as model:
        with pytest.raises(ContextOverflowError, match="raise n_ctx"):
            model.generate(list(range(1000, 1100)), greedy(4))
        out = model.generate(PROMPT, greedy(None), speculator=Speculator.mtp(2))
        assert out.finish_reason == "length"
        assert len(model.tokenize(PROMPT)) + len(out.tokens) <= 64


def test_cancel_token_and_closing_a_stream(tiny: Model) -> None:
    token = CancelToken()
    threading.Timer(0.05, token.cancel).start()
    out = tiny.generate(PROMPT, greedy(None, ignore_eos=True), cancel=token)
    assert out.finish_reason == "cancelled" and len(out.tokens) < 11000
    stream = tiny.stream(PROMPT, greedy(None), speculator=Speculator.mtp(2))
    next(stream)
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 2.0
    assert tiny.generate(PROMPT, greedy(8)).finish_reason == "length"  # the model is still usable


@pytest.mark.usefixtures("python_sigint_handler")
def test_keyboard_interrupt_stops_a_blocking_generate(tiny: Model) -> None:
    threading.Timer(0.1, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        tiny.generate(PROMPT, greedy(None, ignore_eos=True))
    assert len(tiny.generate(PROMPT, greedy(8)).tokens) == 8


def _gil_hostage(n: int) -> float:
    """Holds the GIL for one C call (a backtracking regex never releases it); returns seconds."""
    started = time.perf_counter()
    assert re.match(r"(a+)+b", "a" * n) is None
    return time.perf_counter() - started


def test_streaming_never_waits_for_the_gil(tiny: Model) -> None:
    """The decoding loop hands chunks over without the GIL: while Python code holds the GIL,
    the whole generation still runs and every chunk is queued."""
    params = greedy(24, ignore_eos=True)
    timed = tiny.generate(PROMPT, params, speculator=Speculator.mtp(2))
    # hold the GIL for several times what the generation takes on this machine, now
    want = max(0.4, 4 * timed.stats.predicted_ms / 1000)
    n = 16
    while _gil_hostage(n) < want / 16:  # calibrate: each extra 'a' doubles the time
        n += 1
    stream = tiny.stream(PROMPT, params, speculator=Speculator.mtp(2))
    first = next(stream)  # the loop is running (prompt done, first token out)
    held = _gil_hostage(n + 4)
    pending = stream.pending
    rest = list(stream)
    assert stream.output is not None
    assert stream.output.stats.predicted_ms / 1000 < held, "the machine is too slow for this test"
    # the whole generation was queued while the GIL was held
    assert pending == len(rest) and len(first.tokens) + sum(len(c.tokens) for c in rest) == 24


def test_request_wait_timeouts(tiny: Model) -> None:
    request = tiny._get_engine().submit(tiny.tokenize(PROMPT), greedy(None, ignore_eos=True).to_native(),
                                        Speculator.none(), stream=True)
    with pytest.raises(TimeoutError):
        request.next_chunk(timeout=0.0)  # the prompt is not even evaluated yet
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="non-negative"):
            request.next_chunk(timeout=bad)
        with pytest.raises(ValueError, match="non-negative"):
            request.result(timeout=bad)
    assert request.next_chunk(timeout=float("inf")) is not None  # no limit, and no clock overflow
    request.cancel()
    out = request.result(timeout=30)
    assert out.finish_reason == "cancelled"
    while request.next_chunk() is not None:
        pass
    assert request.next_chunk() is None and request.pending == 0 and request.done


@pytest.mark.usefixtures("python_sigint_handler")
def test_keyboard_interrupt_reaches_a_consumer_waiting_for_a_chunk(tiny_model_path: Path) -> None:
    """A stream queued behind a busy slot: its consumer waits for a first chunk that does not
    come, and Ctrl-C still reaches it (and cancels the queued request)."""
    with Model(tiny_model_path, n_ctx=1024, n_threads=1, n_parallel=1) as model:
        busy = model.stream(PROMPT, greedy(None, ignore_eos=True))
        next(busy)
        waiting = model.stream(PROMPT, greedy(8))
        threading.Timer(0.2, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            next(waiting)
        busy.close()
        assert model.metrics().requests_deferred == 0
        assert len(model.generate(PROMPT, greedy(4)).tokens) == 4


def test_eight_concurrent_callers(tiny: Model, tiny_model_path: Path) -> None:
    """Eight threads on a one-slot model, switching speculators: the requests queue, the engine
    reconfigures between them; none may crash or see another's state."""
    prompts = [PROMPT, "Once upon a time", "没有人", "Meanwhile, in an old", "The quick", "dog.", "Kestrel", "?"]
    expected = {p: synthetic.expected_continuation(tiny_model_path, tiny.tokenize(p), 24) for p in prompts}
    errors: list[BaseException] = []
    results: dict[str, list[int]] = {}

    def call(i: int) -> None:
        try:
            p = prompts[i]
            spec = Speculator.mtp(1 + i % 3) if i % 2 else Speculator.none()
            results[p] = tiny.generate(p, greedy(24), speculator=spec).tokens
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == expected


def test_mtp_unavailable(tiny_nomtp_path: Path) -> None:
    with Model(tiny_nomtp_path, n_ctx=256, n_threads=1) as model:
        assert not model.has_mtp
        with pytest.raises(MTPUnavailableError, match="nextn_predict_layers"):
            model.generate(PROMPT, greedy(4), speculator=Speculator.mtp(2))
        assert len(model.generate(PROMPT, greedy(4)).tokens) == 4


def test_mtp_needs_the_head_loaded(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_ctx=256, n_threads=1, load_mtp=False) as model:
        with pytest.raises(MTPUnavailableError, match="load_mtp"):
            model.generate(PROMPT, greedy(4), speculator=Speculator.mtp(2))


def test_other_speculators_are_lossless(tiny: Model, tiny_model_path: Path) -> None:
    base = tiny.generate(PROMPT, greedy(48)).tokens
    ngram = tiny.generate(PROMPT, greedy(48), speculator=Speculator.ngram(n_max=4, size_n=3, size_m=8))
    assert ngram.tokens == base
    draft = tiny.generate(PROMPT, greedy(48), speculator=Speculator.draft_model(tiny_model_path, n_max=3))
    assert draft.tokens == base
    assert draft.stats.draft_n_accepted == draft.stats.draft_n > 0  # the model drafting for itself


def test_bad_arguments_raise(tiny: Model) -> None:
    with pytest.raises(ValueError):
        tiny.generate("", greedy(4))
    with pytest.raises(ValueError):
        tiny.generate([10**9], greedy(4))
    with pytest.raises(ValueError):
        Speculator.mtp(n_max=0)
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="grammar"):
        tiny.generate(PROMPT, greedy(4, grammar="root ::= (((("))
    with pytest.raises(ValueError, match="n_ubatch|n_batch"):
        with Model(tiny.path, n_ctx=256, n_ubatch=2, n_batch=2, n_threads=1) as small:
            small.generate(PROMPT, greedy(4), speculator=Speculator.mtp(3))
    constrained = tiny.generate(PROMPT, greedy(4, grammar='root ::= [a-z ]+'))
    assert 0 < len(constrained.tokens) <= 4 and re.fullmatch(r"[a-z ]+", constrained.text)


def test_closed_model(tiny_model_path: Path) -> None:
    from llama_mtp import ModelClosedError

    model = Model(tiny_model_path, n_ctx=256, n_threads=1)
    model.close()
    with pytest.raises(ModelClosedError):
        model.generate(PROMPT, greedy(4))
    with pytest.raises(ModelClosedError):
        model.tokenize("x")


def test_mtp_head_from_a_sidecar_gguf(synthetic_model: ModelFactory, tmp_path: Path) -> None:
    """A release that ships the trunk and the MTP head (`mtp-*.gguf`) as two files."""
    from tests.gguf_edit import rewrite

    full = synthetic_model(vocab_size=4096)
    trunk = synthetic_model(vocab_size=4096, mtp=False)
    sidecar = rewrite(full, tmp_path / "mtp-model.gguf",
                      drop_tensor=lambda name: name.startswith("blk.") and not name.startswith("blk.4."))
    with Model(trunk, n_ctx=512, n_threads=1) as model:
        assert not model.has_mtp
        base = model.generate(PROMPT, greedy(48))
        out = model.generate(PROMPT, greedy(48), speculator=Speculator.mtp(2, sidecar=sidecar))
        assert out.tokens == base.tokens
        assert out.stats.num_drafts > 0 and out.stats.draft_n_accepted > 0
