"""Chat on the engine: the template applied, the reply split (llama.cpp's parser), streamed as
deltas (common_chat_msg_diff), sync and async, with log-probabilities, reusing the previous turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llama_mtp import ChatDelta, Model, SamplingParams, Speculator
from llama_mtp.synthetic.behaviour import CHAT_SCRIPT

MESSAGES = [{"role": "user", "content": "Hi there!"}]
REASONING, ANSWER = CHAT_SCRIPT.split("</think>")


@pytest.fixture(scope="module")
def model(chat_model_path: Path) -> Model:
    with Model(chat_model_path, n_ctx=2048, n_threads=1, n_parallel=2) as m:
        yield m


def greedy(**kw: object) -> SamplingParams:
    return SamplingParams.greedy(max_tokens=64, **kw)  # type: ignore[arg-type]


def test_reply_is_split_into_reasoning_and_answer(model: Model) -> None:
    r = model.chat(MESSAGES, greedy(), speculator=Speculator.mtp(2))
    assert r.reasoning_content.strip() == REASONING.strip()
    assert r.content.strip() == ANSWER.replace("<|im_end|>", "").strip()
    assert r.finish_reason == "eos" and r.tool_calls == [] and r.logprobs is None
    assert r.stats.reasoning_chars == len(r.reasoning_content) and r.stats.content_chars == len(r.content)


def test_streamed_deltas_add_up_to_the_reply(model: Model) -> None:
    stream = model.chat_stream(MESSAGES, greedy())
    deltas = list(stream)
    assert stream.result is not None
    assert "".join(d.content for d in deltas) == stream.result.content
    assert "".join(d.reasoning_content for d in deltas) == stream.result.reasoning_content
    assert len(deltas) > 3  # it really streamed
    # reasoning first, then the answer: no delta goes back to reasoning after the answer began
    first_answer = next(i for i, d in enumerate(deltas) if d.content)
    assert not any(d.reasoning_content for d in deltas[first_answer + 1:])


def test_async_chat(model: Model) -> None:
    async def main() -> tuple[list[ChatDelta], str, str]:
        stream = model.achat_stream(MESSAGES, greedy(), speculator=Speculator.mtp(2))
        deltas = [d async for d in stream]
        assert stream.result is not None
        whole = await model.achat(MESSAGES, greedy())
        return deltas, stream.result.content, whole.content

    deltas, streamed, whole = asyncio.run(main())
    assert "".join(d.content for d in deltas) == streamed == whole == model.chat(MESSAGES, greedy()).content


def test_chat_logprobs(model: Model) -> None:
    r = model.chat(MESSAGES, greedy(logprobs=2))
    assert r.logprobs is not None and len(r.logprobs) == r.stats.predicted_n
    assert all(lp.top[0][0] == lp.token for lp in r.logprobs)  # greedy
    stream = model.chat_stream(MESSAGES, greedy(logprobs=2))
    streamed = [lp.token for d in stream for lp in (d.logprobs or [])]
    assert stream.result is not None and stream.result.logprobs is not None
    tokens = [lp.token for lp in stream.result.logprobs]
    # every delta carries the tokens decoded since the one before; a last token that adds no
    # text (the end of turn) stays in the result only
    assert streamed == tokens[:len(streamed)] and len(streamed) >= len(tokens) - 1


def test_the_next_turn_reuses_the_previous_one(model: Model) -> None:
    first = model.chat(MESSAGES, greedy())
    follow = MESSAGES + [first.message.to_openai(), {"role": "user", "content": "And then?"}]
    second = model.chat(follow, greedy())
    # the template drops the reasoning from the history, so the turns share the prompt up to the
    # assistant opener: resumed from the recurrent checkpoint a few tokens before it
    assert second.stats.cache_n > 0 and second.stats.prompt_n > 0
