"""The batching engine: several requests decoded together (continuous batching, chunked prefill,
MTP for every speculating slot), each exactly as it would be alone."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from llama_mtp import (CancelToken, ContextOverflowError, Model, QueueFullError, SamplingParams, Speculator,
                       synthetic)

ModelFactory = Callable[..., Path]

PROMPTS = [
    "Hello there. The quick brown",
    "Once upon a time",
    "没有人",
    "Meanwhile, in an old harbour town called Kestrel Bay lived one elderly clockmaker who",
    "The quick",
    "dog.",
    "Kestrel",
    "? A long time ago, in a galaxy far, far away, there was a small",
]


def greedy(n: int | None, **kw: object) -> SamplingParams:
    return SamplingParams.greedy(max_tokens=n, **kw)  # type: ignore[arg-type]


def speculator_of(i: int) -> Speculator:
    """Requests 0, 4: no speculator; the others MTP with n_max 1..3."""
    return Speculator.none() if i % 4 == 0 else Speculator.mtp(1 + i % 3)


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
@pytest.mark.parametrize("agreement", [0.5, 1.0])
def test_a_batch_of_eight_is_token_identical_to_each_request_alone(
        synthetic_model: ModelFactory, quant: str, agreement: float) -> None:
    path = synthetic_model(quant=quant, mtp_agreement=agreement, vocab_size=4096)
    n = 32
    with Model(path, n_ctx=8 * 512, n_threads=1, n_parallel=8, speculator=Speculator.mtp(3)) as model:
        alone = []
        steps_alone = []
        for i, p in enumerate(PROMPTS):
            before = model.metrics().n_decode_total
            alone.append(model.generate(p, greedy(n), speculator=speculator_of(i), cache_prompt=False))
            steps_alone.append(model.metrics().n_decode_total - before)
        for i, (p, out) in enumerate(zip(PROMPTS, alone)):
            assert out.tokens == synthetic.expected_continuation(path, model.tokenize(p), n), f"request {i}"
        before = model.metrics()
        # streams are submitted when created: all eight within one engine step
        streams = [model.stream(p, greedy(n), speculator=speculator_of(i), cache_prompt=False)
                   for i, p in enumerate(PROMPTS)]
        for stream in streams:
            for _ in stream:
                pass
        outputs = [stream.output for stream in streams]
        after = model.metrics()
    for i, (a, b) in enumerate(zip(alone, outputs)):
        assert b.tokens == a.tokens, f"request {i}"  # type: ignore[attr-defined]
        assert b.text == a.text  # type: ignore[attr-defined]
        if i % 4:
            assert b.stats.num_drafts > 0  # type: ignore[attr-defined]
            # MTP in a batch drafts as alone (llama.cpp issue #27572: acceptance fell to 0 with
            # several sequences when the hidden states were read before they landed)
            assert b.stats.draft_n_accepted == a.stats.draft_n_accepted  # type: ignore[attr-defined]
            assert len(b.stats.accepted_per_position) == 1 + i % 3  # type: ignore[attr-defined]
        else:
            assert b.stats.num_drafts == 0  # type: ignore[attr-defined]
    # they really ran together: far fewer decoded batches than the requests need one after the
    # other (the submissions may straddle a few of this tiny model's millisecond steps)
    batches = after.n_decode_total - before.n_decode_total
    assert batches < sum(steps_alone) / 2, (batches, steps_alone)


def test_generate_a_list_returns_outputs_in_order(tiny: Model, tiny_model_path: Path) -> None:
    outs = tiny.generate(PROMPTS[:5], greedy(16))
    assert [o.tokens for o in outs] == [synthetic.expected_continuation(tiny_model_path, tiny.tokenize(p), 16)
                                         for p in PROMPTS[:5]]
    per_request = tiny.generate(PROMPTS[:2], [greedy(4), greedy(8)])
    assert [len(o.tokens) for o in per_request] == [4, 8]
    with pytest.raises(ValueError, match="2 prompts but 1"):
        tiny.generate(PROMPTS[:2], [greedy(4)])
    token_prompts = tiny.generate([tiny.tokenize(PROMPTS[0]), tiny.tokenize(PROMPTS[1])], greedy(8))
    assert token_prompts[0].tokens == outs[0].tokens[:8]
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    cancelled = tiny.generate(PROMPTS[:3], greedy(None, ignore_eos=True), cancel=token)
    assert [o.finish_reason for o in cancelled] == ["cancelled"] * 3


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> Model:
    with Model(tiny_model_path, n_ctx=4 * 1024, n_threads=1, n_parallel=4) as model:
        yield model


def test_cancelling_one_stream_does_not_change_the_others(tiny: Model) -> None:
    n = 40
    alone = [tiny.generate(p, greedy(n), speculator=Speculator.mtp(2)).tokens for p in PROMPTS[:3]]
    streams = [tiny.stream(p, greedy(n), speculator=Speculator.mtp(2)) for p in PROMPTS[:3]]
    got: list[list[int]] = [[], [], []]
    for i, s in enumerate(streams):
        got[i] += next(s).tokens
    streams[1].close()  # mid-batch
    assert streams[1].output is not None and streams[1].output.finish_reason == "cancelled"
    late = tiny.stream(PROMPTS[3], greedy(n))  # joins while the others generate
    for i in (0, 2):
        for chunk in streams[i]:
            got[i] += chunk.tokens
        assert got[i] == alone[i]
    late_tokens = [t for c in late for t in c.tokens]
    assert late_tokens == tiny.generate(PROMPTS[3], greedy(n)).tokens


def test_thirty_two_concurrent_streams_on_four_slots_all_complete(tiny: Model) -> None:
    errors: list[BaseException] = []
    lengths: list[int] = []
    lock = threading.Lock()
    seen_deferred = []

    def client(i: int) -> None:
        try:
            spec = Speculator.mtp(2) if i % 2 else Speculator.none()
            tokens = [t for c in tiny.stream(PROMPTS[i % len(PROMPTS)], greedy(12), speculator=spec)
                      for t in c.tokens]
            with lock:
                lengths.append(len(tokens))
                seen_deferred.append(tiny.metrics().requests_deferred)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    before = tiny.metrics().requests_finished_total
    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert lengths == [12] * 32
    m = tiny.metrics()
    assert m.requests_finished_total - before == 32
    assert m.requests_processing == 0 and m.requests_deferred == 0  # the queue drained
    assert max(seen_deferred) > 0  # more requests than slots did wait


def test_asyncio_tasks_are_batched(tiny: Model) -> None:
    async def one(p: str) -> list[int]:
        stream = tiny.astream(p, greedy(16))
        return [t async for c in stream for t in c.tokens]

    async def main() -> list[list[int]]:
        return list(await asyncio.gather(*(one(p) for p in PROMPTS[:6])))

    results = asyncio.run(main())
    assert results == [tiny.generate(p, greedy(16)).tokens for p in PROMPTS[:6]]


def test_long_prompt_prefill_does_not_stall_the_others(synthetic_model: ModelFactory) -> None:
    """A prompt of 4,500 tokens is admitted while three slots decode: they keep producing tokens
    during its prefill (chunked, one micro-batch per step)."""
    path = synthetic_model(vocab_size=4096)
    with Model(path, n_ctx=4 * 6144, n_threads=1, n_parallel=4, n_batch=2048, n_ubatch=256) as model:
        long_prompt = model.tokenize("The quick brown fox jumps over the lazy dog. " * 450)[:4500]
        assert len(long_prompt) == 4500
        decoders = [model.stream(p, greedy(None, ignore_eos=True)) for p in PROMPTS[:3]]
        for d in decoders:
            next(d)
        long_request = model.stream(long_prompt, greedy(4))
        stamps: list[list[float]] = [[], [], []]
        first_long: list[float] = []

        def watch_long() -> None:
            next(long_request)
            first_long.append(time.perf_counter())
            long_request.close()

        started = time.perf_counter()
        watcher = threading.Thread(target=watch_long)
        watcher.start()
        # read the three decoders round-robin until the long prompt's first token is out
        while not first_long and time.perf_counter() - started < 300:
            for i, d in enumerate(decoders):
                next(d)
                stamps[i].append(time.perf_counter())
        watcher.join()
        for d in decoders:
            d.close()
    prefill = first_long[0] - started
    for s in stamps:
        during = [t for t in s if t < first_long[0]]
        # 4,500 tokens in chunks of 256: ~18 steps, each with a token of every decoder
        assert len(during) >= 10, (len(during), prefill)
        gaps = [b - a for a, b in zip([started] + during, during)]
        assert max(gaps) < prefill / 4, (max(gaps), prefill)


def test_queue_is_bounded(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_ctx=1024, n_threads=1, n_parallel=1, max_queue=2) as model:
        busy = model.stream(PROMPTS[0], greedy(None, ignore_eos=True))
        next(busy)
        waiting = [model.stream(p, greedy(4)) for p in PROMPTS[1:3]]
        with pytest.raises(QueueFullError, match="max_queue"):
            model.stream(PROMPTS[3], greedy(4))
        assert model.metrics().requests_deferred == 2
        busy.close()
        assert [len([t for c in w for t in c.tokens]) for w in waiting] == [4, 4]


def test_a_speculator_set_at_load_is_every_requests(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_ctx=1024, n_threads=1, speculator=Speculator.mtp(2)) as model:
        assert model.speculator == Speculator.mtp(2)
        out = model.generate(PROMPTS[0], greedy(16))
        assert out.stats.num_drafts > 0 and len(out.stats.accepted_per_position) == 2
        assert model.generate(PROMPTS[0], greedy(16), speculator=Speculator.mtp(1)).stats.draft_n <= 16
        assert model.generate(PROMPTS[0], greedy(16), speculator=Speculator.none()).stats.num_drafts == 0
        with pytest.raises(ValueError, match="set at load"):
            model.generate(PROMPTS[0], greedy(4), speculator=Speculator.mtp(3))
        with pytest.raises(ValueError, match="set at load"):
            model.generate(PROMPTS[0], greedy(4), speculator=Speculator.ngram())


def test_logprobs_come_from_the_target_also_with_mtp(tiny: Model) -> None:
    plain = tiny.generate(PROMPTS[0], greedy(16, logprobs=3))
    mtp = tiny.generate(PROMPTS[0], greedy(16, logprobs=3), speculator=Speculator.mtp(3))
    assert plain.logprobs is not None and mtp.logprobs is not None
    assert len(plain.logprobs) == len(plain.tokens) == 16
    for token, lp, lp_mtp in zip(plain.tokens, plain.logprobs, mtp.logprobs):
        assert lp.token == token and lp.top[0][0] == token  # greedy: the top-1 token is the one chosen
        assert lp.top[0][1] == pytest.approx(lp.logprob) and lp.logprob <= 0
        assert len(lp.top) == 3 and lp.top[0][1] >= lp.top[1][1] >= lp.top[2][1]
        assert lp_mtp.token == token and lp_mtp.logprob == pytest.approx(lp.logprob, abs=1e-3)
    assert tiny.generate(PROMPTS[0], greedy(4)).logprobs is None
    chunks = list(tiny.stream(PROMPTS[0], greedy(8, logprobs=0)))
    streamed = [lp for c in chunks for lp in (c.logprobs or [])]
    assert [lp.token for lp in streamed] == plain.tokens[:8] and all(not lp.top for lp in streamed)
    with pytest.raises(ValueError, match="logprobs"):
        SamplingParams(logprobs=21)


def test_per_slot_context_without_a_unified_pool(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_ctx=1024, n_threads=1, n_parallel=4, kv_unified=False) as model:
        with pytest.raises(ContextOverflowError, match="n_ctx / n_parallel"):
            model.generate(list(range(1000, 1300)), greedy(4))
        out = model.generate(PROMPTS[0], greedy(None, ignore_eos=True))
        assert out.finish_reason == "length" and len(out.tokens) < 256


def test_a_full_shared_pool_ends_a_request_not_the_process(tiny_model_path: Path) -> None:
    """Four requests that each could fill the unified pool: when it runs out, the request holding
    the most ends with "length"; the others go on; nothing crashes."""
    with Model(tiny_model_path, n_ctx=512, n_threads=1, n_parallel=4) as model:
        outs = model.generate(PROMPTS[:4], greedy(None, ignore_eos=True))
        assert all(o.finish_reason == "length" for o in outs)
        assert len(model.generate(PROMPTS[0], greedy(8)).tokens) == 8
