"""GGUF fuzzing (benches/fuzz_gguf.py): a fast slice of mutants of a full small model, and the
harness itself (mutants reproducible from their seed; a child that dies is replaced and the
mutant that killed it isolated)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
from fuzz.base import BASES  # noqa: E402
from fuzz.gguf_struct import parse, serialize  # noqa: E402
from fuzz.mutate import OPT_IN, STRATEGIES, Base, mutate  # noqa: E402
from fuzz.report import markdown, summarize  # noqa: E402
from fuzz.runner import Runner  # noqa: E402

from tests.conftest import SyntheticFactory  # noqa: E402

SLICE = 500


@pytest.fixture(scope="module")
def fuzz_base(synthetic_model: SyntheticFactory) -> Path:
    """The fuzzer's default base: a complete qwen35 model (MTP head included) with a 4,096-token
    vocabulary, the same arguments as ``benches/fuzz_gguf.py --base qwen35``."""
    args = dict(BASES["qwen35"])
    return synthetic_model(preset=args.pop("preset"), quant=args.pop("quant"),
                           mtp_agreement=args.pop("mtp_agreement"), **args)


def test_parse_serialize_round_trip(fuzz_base: Path) -> None:
    raw = fuzz_base.read_bytes()
    g = parse(raw)
    assert g.arch == "qwen35"
    assert serialize(g) == raw


def test_mutants_are_reproducible_from_their_seed(fuzz_base: Path) -> None:
    base = Base(fuzz_base.read_bytes())
    for seed in range(40):
        a, b = mutate(base, seed), mutate(base, seed)
        assert (a.strategy, a.detail, a.data) == (b.strategy, b.detail, b.data)
        assert a.data != base.raw or a.strategy in ("data_flip", "splice", "byte_flip")
    assert len({mutate(base, s).data for s in range(40)}) > 35


def test_fast_slice(fuzz_base: Path) -> None:
    """500 mutants, every strategy, in two child processes: none may kill the process or raise
    anything but a llama_mtp error / ValueError, and the unbroken ones still generate with MTP."""
    t0 = time.monotonic()
    runner = Runner(fuzz_base, batch_size=SLICE // 4, jobs=2, timeout_s=120)
    try:
        runner.run(range(SLICE))
    finally:
        runner.close()
    elapsed = time.monotonic() - t0
    s = summarize(runner.records, runner.findings, {
        "command": "tests/test_fuzz_gguf.py::test_fast_slice", "base": "qwen35",
        "reproduce_args": "--base qwen35",
        "base_args": BASES["qwen35"], "base_sha256": "", "base_size": 0, "seed_start": 0,
        "n_seeds": SLICE, "jobs": 2, "batch_size": SLICE // 4, "children": runner.children,
        "elapsed_s": elapsed})
    report = markdown(s)
    assert not runner.findings, report
    assert s["outcomes"]["unexpected"] == 0, report
    assert s["outcomes"]["harness_error"] == 0, report
    assert s["n_mutants"] == SLICE
    assert set(s["per_strategy"]) == set(STRATEGIES) - set(OPT_IN), report
    assert s["outcomes"]["rejected"] > 100, report
    assert s["ok_with_mtp"] > 20, report          # mutants that still load run MTP drafting


@pytest.fixture()
def selftest(monkeypatch: pytest.MonkeyPatch) -> "Selftest":
    return Selftest(monkeypatch)


class Selftest:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def __call__(self, **hooks: object) -> None:
        self.monkeypatch.setenv("FUZZ_SELFTEST", json.dumps(hooks))


def test_a_dead_child_is_replaced_and_its_mutant_isolated(fuzz_base: Path, selftest: Selftest) -> None:
    selftest(abort=[3])
    runner = Runner(fuzz_base, batch_size=6, timeout_s=60)
    try:
        runner.run(range(6))
    finally:
        runner.close()
    assert sorted(runner.records) == list(range(6))       # the rest of the batch went on
    assert [f.seed for f in runner.findings] == [3]
    f = runner.findings[0]
    assert f.kind == "abort" and f.returncode == -6
    assert f.cls == "selftest.cpp:1: GGML_ASSERT(seed != 3) failed"
    assert f.strategy == mutate(Base(fuzz_base.read_bytes()), 3).strategy
    assert runner.records[3]["outcome"] == "abort"
    assert {runner.records[s]["outcome"] for s in (0, 1, 2, 4, 5)} <= {"ok", "rejected"}


def test_an_abort_that_needs_an_earlier_mutant_is_bisected(fuzz_base: Path, selftest: Selftest) -> None:
    selftest(abort_after=[[1, 5]])          # seed 5 dies only after seed 1 ran in the same process
    runner = Runner(fuzz_base, batch_size=7, timeout_s=60)
    try:
        runner.run(range(7))
    finally:
        runner.close()
    assert [(f.seed, f.needs) for f in runner.findings] == [(5, [1])]
    assert sorted(runner.records) == list(range(7))


def test_an_abort_at_exit_is_traced_to_its_mutant(fuzz_base: Path, selftest: Selftest) -> None:
    selftest(abort_at_exit=[2])
    runner = Runner(fuzz_base, batch_size=4, timeout_s=60)
    try:
        runner.run(range(4))
    finally:
        runner.close()
    assert [f.seed for f in runner.findings] == [2]
    assert runner.findings[0].cls == "signal SIGABRT"


def test_a_hang_is_killed_and_recorded(fuzz_base: Path, selftest: Selftest) -> None:
    selftest(hang=[1])
    runner = Runner(fuzz_base, batch_size=3, timeout_s=5)
    try:
        runner.run(range(3))
    finally:
        runner.close()
    assert [(f.seed, f.kind) for f in runner.findings] == [(1, "hang")]
    assert sorted(runner.records) == [0, 1, 2]
