"""Adaptive speculation (``Speculator.mtp(n_max="auto")``): the draft-length controller's choices
on synthetic costs and acceptance, and lossless decoding with it on synthetic models."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from llama_mtp import Model, SamplingParams, Speculator, _core

ModelFactory = Callable[..., Path]
PROMPT = "Hello there. The quick brown"


def linear(base: float, per_row: float, max_rows: int = 16) -> list[float]:
    """step_seconds[r] for r rows (index 0 unused)."""
    return [0.0] + [base + per_row * (r - 1) for r in range(1, max_rows + 1)]


def test_expected_tokens_counts_the_bonus_token() -> None:
    assert _core._expected_tokens([0.5, 0.5], 0) == 1.0
    assert _core._expected_tokens([0.5, 0.5], 1) == pytest.approx(1.5)
    assert _core._expected_tokens([0.5, 0.5], 2) == pytest.approx(1.75)
    assert _core._expected_tokens([1.0, 1.0, 1.0], 3) == pytest.approx(4.0)


def test_controller_drafts_the_most_when_acceptance_is_high_and_verification_nearly_free() -> None:
    assert _core._best_draft_length([0.99] * 3, linear(0.1, 0.001), 0.001, 0, 3) == 3


def test_controller_picks_plain_decoding_when_verification_costs_what_it_gains() -> None:
    # each extra row costs a whole step: a token that is accepted half the time never pays
    assert _core._best_draft_length([0.5] * 3, linear(0.1, 0.1), 0.0, 0, 3) == 0
    # and drafting is never free: with any drafting cost, low acceptance means plain decoding
    assert _core._best_draft_length([0.1] * 3, linear(0.1, 0.01), 0.02, 0, 3) == 0


def test_controller_stops_at_the_position_where_acceptance_falls() -> None:
    # cheap rows, but the third position is almost never accepted
    assert _core._best_draft_length([0.9, 0.9, 0.02], linear(0.1, 0.01), 0.005, 0, 3) == 2


def test_controller_counts_the_other_rows_of_the_batch() -> None:
    # a step's cost grows with the rows of the other sequences in it (compute-bound CPU)
    steps = [0.0] + [0.1 * r for r in range(1, 40)]
    alone = _core._best_draft_length([0.7] * 3, steps, 0.0, 0, 3)
    busy = _core._best_draft_length([0.7] * 3, steps, 0.0, 12, 3)
    assert alone == 0 and busy >= 1  # in a big batch one more row costs relatively little


def test_depth_choice_prefers_plain_or_the_shortest_depth_that_pays() -> None:
    steps = linear(0.1, 0.02)
    # drafting costs 0.03 s per step: with high acceptance a deep draft wins
    assert _core._best_draft_depth([0.95] * 3, steps, [0.0, 0.03, 0.06, 0.09], 3) == 3
    # acceptance only at the first position: depth 1
    assert _core._best_draft_depth([0.9, 0.05, 0.05], steps, [0.0, 0.03, 0.06, 0.09], 3) == 1
    # nothing accepted: plain decoding (0)
    assert _core._best_draft_depth([0.01] * 3, steps, [0.0, 0.03, 0.06, 0.09], 3) == 0
    # a request served plainly does not pay for the MTP head following its steps: with that
    # cheaper plain step, a draft that pays against a followed 1-row step may not pay at all
    assert _core._best_draft_depth([0.6] * 3, steps, [0.0, 0.03, 0.06, 0.09], 3) == 1
    assert _core._best_draft_depth([0.6] * 3, steps, [0.0, 0.03, 0.06, 0.09], 3, plain_step_seconds=0.08) == 0


def test_acceptance_estimate_weights_recent_steps() -> None:
    p = _core._acceptance_after(3, 0.8, 0.5, [(3, 3)] * 4)
    assert p[0] > 0.98 and p[2] > 0.98
    p = _core._acceptance_after(3, 0.8, 0.5, [(3, 0)] * 4)
    assert p[0] < 0.1
    assert p[1] == pytest.approx(0.8) and p[2] == pytest.approx(0.8)  # never tested: the prior
    p = _core._acceptance_after(3, 0.8, 0.5, [(3, 1)])
    assert p[0] == pytest.approx(0.9) and p[1] == pytest.approx(0.4) and p[2] == pytest.approx(0.8)


def test_acceptance_estimate_replaces_its_prior_with_the_first_tests() -> None:
    """A fresh engine (weight 0.05: about 20 tests remembered) does not crawl from its prior: the
    prior counts as one test, and until 20 tests are in the estimate is their plain mean."""
    p = _core._acceptance_after(3, 0.8, 0.05, [(3, 3)] * 10)
    assert p[0] == pytest.approx((0.8 + 10) / 11) and p[2] == pytest.approx((0.8 + 10) / 11)
    p = _core._acceptance_after(1, 0.8, 0.05, [(1, 1)] * 40 + [(1, 0)])
    # the mean of 20 (0.99), then recent-weighted: the 21 hits after it and the miss 5 % each
    assert p[0] == pytest.approx(0.95 * (1 - 0.01 * 0.95 ** 21))


def step_costs(samples: list[tuple[int, float]], rows: list[int]) -> list[float]:
    costs = _core._StepCosts()
    for r, seconds in samples:
        costs.add(r, seconds)
    return [costs.seconds(r) for r in rows]


def test_step_costs_interpolate_unseen_row_counts() -> None:
    est = step_costs([(1, 0.1), (3, 0.3)], [1, 2, 3, 5])
    assert est == pytest.approx([0.1, 0.2, 0.3, 0.5])
    assert step_costs([(2, 0.2)], [4]) == pytest.approx([0.2])  # one point: flat
    assert step_costs([], [1]) == [0.0]


def test_step_costs_leave_out_the_slowest_quarter() -> None:
    """A step that another process interrupted says nothing about what the step costs."""
    costs = _core._StepCosts()
    for seconds in [0.10, 0.11, 0.09, 0.10, 0.50, 0.10, 0.11, 0.09]:
        costs.add(1, seconds)
    assert costs.seconds(1) == pytest.approx(0.10, abs=0.003)
    for _ in range(3 * costs.window):
        costs.add(1, 0.2)
    assert costs.samples(1) == costs.window  # only the recent ones are kept
    assert costs.seconds(1) == pytest.approx(0.2)


def test_step_costs_go_stale_and_are_measured_again() -> None:
    costs = _core._StepCosts()
    for _ in range(6):
        costs.add(2, 0.2)
    assert costs.samples(2) == 6
    for _ in range(costs.stale_after + 1):
        costs.tick()
    assert costs.samples(2) == 0  # not trusted any more: to be measured again
    assert costs.seconds(2) == pytest.approx(0.2)  # what there is serves until then
    costs.add(2, 0.1)
    assert costs.samples(2) == 1 and costs.seconds(2) == pytest.approx(0.1)  # fresh ones first


def test_step_costs_compare_row_counts_measured_in_the_same_spell() -> None:
    """A row count's cost is its ratio to the rows in use, measured when both ran close together,
    times what the rows in use cost now: the machine's drift moves them together."""
    costs = _core._StepCosts()
    for _ in range(8):  # 1 and 3 rows in turn: 3 rows cost twice 1 row
        costs.add(1, 0.10)
        costs.tick()
        costs.add(3, 0.20)
        costs.tick()
    assert costs.ratio(1, 3) == pytest.approx(0.5) and costs.ratio(3, 1) == pytest.approx(2.0)
    assert costs.seconds(1) == pytest.approx(0.10) and costs.seconds(3) == pytest.approx(0.20)
    for _ in range(2 * costs.recent_ticks):  # then 3 rows only, the machine a third slower
        costs.add(3, 0.26)
        costs.tick()
    assert costs.reference() == 3
    assert costs.seconds(3) == pytest.approx(0.26)
    assert costs.seconds(1) == pytest.approx(0.13)  # not the 0.10 of the faster spell
    assert costs.seconds(2) == pytest.approx(0.195)  # unseen: on the line through them


def test_a_cost_measured_in_a_slow_spell_is_not_kept_for_good() -> None:
    """4 and 3 rows explored together while the machine was slow; 3 rows in use since, fast. The
    4-row step is estimated at the pace of now, so it can win again."""
    costs = _core._StepCosts()
    for _ in range(6):
        costs.add(3, 0.13)
        costs.tick()
        costs.add(4, 0.17)
        costs.tick()
    for _ in range(40):
        costs.add(3, 0.106)
        costs.tick()
    assert costs.seconds(4) == pytest.approx(0.106 * 0.17 / 0.13)
    unpaired = _core._StepCosts()  # never measured alongside the rows in use: its own measurements
    for _ in range(6):
        unpaired.add(4, 0.17)
        unpaired.tick()
    for _ in range(costs.pair_ticks + 1):
        unpaired.tick()
    for _ in range(40):
        unpaired.add(3, 0.106)
        unpaired.tick()
    assert unpaired.ratio(4, 3) == 0.0 and unpaired.seconds(4) == pytest.approx(0.17)


def test_a_pair_with_an_interrupted_measurement_does_not_move_the_ratio() -> None:
    costs = _core._StepCosts()
    for i in range(9):
        costs.add(1, 0.10)
        costs.add(2, 0.50 if i == 4 else 0.15)  # one step interrupted by another process
        costs.tick()
    assert costs.ratio(2, 1) == pytest.approx(1.5)


def test_draft_costs_scale_the_depth_in_use_per_step() -> None:
    drafts = _core._DraftCosts()
    assert drafts.seconds(2) == 0.0
    for _ in range(8):  # depth 3 once, in a slow spell
        drafts.add(3, 0.036)
        drafts.tick()
    for _ in range(2 * _core._StepCosts.recent_ticks):
        drafts.tick()
    for _ in range(20):  # depth 2 in use now
        drafts.add(2, 0.016)
        drafts.tick()
    assert drafts.seconds(2) == pytest.approx(0.016)
    assert drafts.seconds(3) == pytest.approx(0.024)  # not the 0.036 of then
    assert drafts.seconds(1) == pytest.approx(0.008)


def test_controller_measures_each_draft_length_before_comparing_them() -> None:
    controller = _core._DraftController(2)
    tries = controller.trusted_after + 1
    choices = [controller.choose(linear(0.1, 0.01), [0.0, 0.01, 0.02], 2, 0, measurements=1)[0]
               for _ in range(3 * tries + 1)]
    assert choices[:3 * tries] == [0, 1, 2] * tries  # bounded, the lengths in turn (one spell)
    assert choices[-1] == 2  # then the costs decide: verification nearly free, the longest draft


def test_a_drafting_sequence_stops_only_when_plain_decoding_is_clearly_faster() -> None:
    """Rejections pull the acceptance estimate down one verification at a time: the sequence keeps
    drafting while plain decoding is faster by less than the margin, and stops beyond it."""
    steps, drafts = linear(1.0, 0.6), [0.0, 0.1]
    controller = _core._DraftController(1)
    close_calls = 0
    for _ in range(60):
        k, probe = controller.choose(steps, drafts, 1, 0)
        p = controller.acceptance[0]
        plain, draft = 1.0 / steps[1], (1.0 + p) / (steps[2] + drafts[1])
        if k == 0:
            assert not probe and plain >= (1.0 + controller.leave_margin) * draft, p
            break
        assert plain < (1.0 + controller.leave_margin) * draft, p
        close_calls += plain > draft
        controller.verified(1, 0)
    else:
        pytest.fail("the sequence never stopped drafting")
    assert close_calls >= 1  # it went on drafting where plain decoding looked (a little) faster


@pytest.mark.parametrize("agreement", [0.0, 0.5, 0.8, 1.0])
def test_auto_is_lossless(synthetic_model: ModelFactory, agreement: float) -> None:
    path = synthetic_model(mtp_agreement=agreement, vocab_size=4096)
    with Model(path, n_ctx=2048, n_threads=1) as model:
        base = model.generate(PROMPT, SamplingParams.greedy(max_tokens=96))
        auto = model.generate(PROMPT, SamplingParams.greedy(max_tokens=96), speculator=Speculator.mtp("auto"))
        assert auto.tokens == base.tokens
        hist = auto.stats.draft_len_histogram
        assert len(hist) == 4 and sum(hist) > 0  # every generation step counted, k = 0..3
        if agreement == 0.0:
            # nothing is ever accepted: the controller settles on plain decoding, with rare probes
            assert hist[0] > sum(hist[1:]), hist


def test_auto_measures_every_draft_length_in_its_first_request(synthetic_model: ModelFactory) -> None:
    """A fresh engine knows no costs: its first request drafts to the full depth and verifies each
    draft length for a few steps (plain decoding, k = 0, included) before choosing between them."""
    path = synthetic_model(mtp_agreement=1.0, vocab_size=4096)
    with Model(path, n_ctx=2048, n_threads=1) as model:
        out = model.generate(PROMPT, SamplingParams.greedy(max_tokens=96), speculator=Speculator.mtp("auto"))
        hist = out.stats.draft_len_histogram
        assert len(hist) == 4 and all(n >= _core._DraftController.trusted_after for n in hist), hist


def test_auto_serves_plainly_when_drafting_never_pays(synthetic_model: ModelFactory) -> None:
    """At agreement 0 no draft is ever accepted, so no depth pays: once that is measured, auto's
    requests run with no MTP work at all (no drafting, no MTP head following the tokens), except
    the 4th, which speculates again to notice a change, then the 8th after it (the interval
    doubles while the rechecks find that drafting still does not pay)."""
    path = synthetic_model(mtp_agreement=0.0, vocab_size=4096)
    params = SamplingParams.greedy(max_tokens=48)
    with Model(path, n_ctx=2048, n_threads=1) as model:
        base = model.generate(PROMPT, params)
        spec = Speculator.mtp("auto")
        learn = model.generate(PROMPT, params, speculator=spec)
        assert learn.tokens == base.tokens and sum(learn.stats.draft_len_histogram) > 0
        speculated = []
        for _ in range(16):
            out = model.generate(PROMPT, params, speculator=spec)
            assert out.tokens == base.tokens
            speculated.append(sum(out.stats.draft_len_histogram) > 0)
            assert speculated[-1] or out.stats.draft_n == 0
        assert speculated == [False] * 3 + [True] + [False] * 7 + [True] + [False] * 4, speculated


def test_auto_from_every_spelling() -> None:
    assert Speculator.mtp("auto") == Speculator.auto() == Speculator("draft-mtp", n_max=3, adaptive=True)
    assert Speculator.from_config({"method": "mtp", "num_speculative_tokens": "auto"}).adaptive
    with pytest.raises(ValueError, match="auto"):
        Speculator.mtp("often")  # type: ignore[arg-type]


def replay(agree: list[bool], step_seconds: list[float], draft_seconds: list[float],
           depth: int = 2) -> list[tuple[int, int]]:
    """Runs one sequence's controller along a text whose draft token at position i matches the
    target's when agree[i]: verified drafts accept up to the first mismatch, probes are compared
    with the tokens plain decoding produces. Returns (position, verified draft length) per step."""
    controller = _core._DraftController(depth)
    steps: list[tuple[int, int]] = []
    pos = 0
    while pos + depth < len(agree):
        k, probe = controller.choose(step_seconds, draft_seconds, depth, 0)
        if k > 0 and not probe:
            accepted = 0
            while accepted < k and agree[pos + accepted]:
                accepted += 1
            controller.verified(k, accepted)
            steps.append((pos, k))
            pos += accepted + 1
            continue
        if probe:
            controller.start_probe([pos + i if agree[pos + i] else -1 for i in range(k)])
        steps.append((pos, 0))
        controller.observe(pos)
        pos += 1
    return steps


def test_controller_follows_agreement_that_varies_along_the_text() -> None:
    """Spans of 40 tokens the head always predicts alternate with spans it never does (the
    "varying" synthetic behaviour). With costs where a fully accepted draft pays and a rejected
    one does not, the controller verifies drafts through the agreeing spans and decodes plainly
    through the others, after a few tokens of each span to notice the change."""
    span = 40
    agree = [(i // span) % 2 == 0 for i in range(8 * span)]
    steps = replay(agree, linear(1.0, 0.05), [0.0, 0.15, 0.3])
    settle = 16  # tokens into a span before the choice must have followed it
    drafted_in = {True: 0, False: 0}
    steps_in = {True: 0, False: 0}
    for pos, k in steps:
        if pos % span < settle:
            continue
        steps_in[agree[pos]] += 1
        drafted_in[agree[pos]] += k > 0
    assert drafted_in[True] >= 0.8 * steps_in[True], (drafted_in, steps_in)
    assert drafted_in[False] <= 0.1 * steps_in[False], (drafted_in, steps_in)
    # and with no agreement at all, drafting stops for good but for the probes
    never = replay([False] * 400, linear(1.0, 0.05), [0.0, 0.15, 0.3])
    assert sum(k > 0 for _, k in never[20:]) <= 2, never


def test_auto_on_text_whose_agreement_varies(synthetic_model: ModelFactory) -> None:
    """auto on the "varying" synthetic model (agreement 1 and 0 in alternate spans) gives exactly
    plain decoding's tokens, whatever it chooses on this machine's measured costs."""
    path = synthetic_model(behaviour="varying", vocab_size=4096)
    with Model(path, n_ctx=4096, n_threads=1) as model:
        prompt = model.tokenize(" the")
        params = SamplingParams.greedy(max_tokens=480, ignore_eos=True)  # three 160-token cycles
        base = model.generate(prompt, params)
        spec = Speculator.mtp("auto")
        for _ in range(3):  # later requests start from what the first ones learned
            auto = model.generate(prompt, params, speculator=spec)
            assert auto.tokens == base.tokens


def test_auto_logs_its_estimates_at_debug_level(synthetic_model: ModelFactory,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """With ``set_log_level("DEBUG")`` each speculating request logs what auto decided from."""
    import llama_mtp

    path = synthetic_model(mtp_agreement=1.0, vocab_size=4096)
    before = llama_mtp.get_log_level()
    try:
        llama_mtp.set_log_level("DEBUG")
        with caplog.at_level("DEBUG", logger="llama_mtp"), Model(path, n_ctx=1024, n_threads=1) as model:
            for _ in range(2):
                model.generate(PROMPT, SamplingParams.greedy(max_tokens=24), speculator=Speculator.mtp("auto"))
    finally:
        llama_mtp.set_log_level(before)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("adaptive: depth")]
    assert len(lines) == 2, lines
    # the second request decides from costs measured during the first
    assert "acceptance per position" in lines[1] and "step ms by rows" in lines[1]
    step_ms = [float(x) for x in lines[1].split("step ms by rows")[1].split(";")[0].split()]
    assert len(step_ms) == 4 and all(ms > 0 for ms in step_ms), lines[1]
