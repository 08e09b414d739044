"""benches/pooled.py: the pooled paired ratios the performance section quotes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
import pooled  # noqa: E402


def trial(contender: str, rep: int, gen: float, agreement: float = 0.8, quant: str = "Q4_K_M",
          correct: bool = True, cpu: float | None = None) -> dict[str, Any]:
    return {"workload": "short", "quant": quant, "agreement": agreement, "rep": rep,
            "contender": contender, "gen_tps": gen, "prompt_tps": 50.0, "correct": correct,
            "extra": {"cpu_s": cpu} if cpu else {}}


def test_pairs_each_run_with_the_reference_run_of_the_same_repeat() -> None:
    trials = [trial("server", 0, 10.0), trial("ours", 0, 9.0),
              trial("server", 1, 20.0), trial("ours", 1, 21.0)]
    ratios = pooled.paired_ratios(trials, "gen_tps")
    assert ratios[("short", "ours", "server", "all")] == pytest.approx([0.9, 1.05])


def test_mtp_against_plain_reference_is_grouped_by_agreement() -> None:
    # plain contenders run on the 0.8 model only; the MTP cell at 1.0 still pairs with them
    trials = [trial("lcp", 0, 10.0), trial("ours-mtp", 0, 8.0),
              trial("ours-mtp", 0, 12.0, agreement=1.0), trial("server-mtp", 0, 12.0, agreement=1.0)]
    ratios = pooled.paired_ratios(trials, "gen_tps")
    assert ratios[("short", "ours-mtp", "lcp", "0.8")] == pytest.approx([0.8])
    assert ratios[("short", "ours-mtp", "lcp", "1")] == pytest.approx([1.2])
    assert ratios[("short", "ours-mtp", "server-mtp", "all")] == pytest.approx([1.0])


def test_failed_or_wrong_runs_and_cpu_direction() -> None:
    trials = [trial("server", 0, 10.0, cpu=8.0), trial("ours", 0, 10.0, cpu=10.0),
              trial("server", 1, 10.0), trial("ours", 1, 30.0, correct=False)]
    assert pooled.paired_ratios(trials, "gen_tps")[("short", "ours", "server", "all")] == [1.0]
    # less CPU is better: reference / contender
    assert pooled.paired_ratios(trials, "cpu_s")[("short", "ours", "server", "all")] == [0.8]


def test_geomean_interval_brackets_the_estimate_and_is_reproducible() -> None:
    xs = [0.95, 1.0, 1.02, 0.98, 1.05, 0.99]
    g, lo, hi = pooled.geomean_ci(xs)
    assert lo <= g <= hi
    assert g == pytest.approx(1.0, abs=0.01)
    assert pooled.geomean_ci(xs) == (g, lo, hi)
    table = pooled.table_from_trials([trial("server", r, 10.0) for r in range(3)] +
                                     [trial("ours", r, 10.0 + r) for r in range(3)])
    assert "| short | ours | server | all | gen tok/s | 3 | 1.100 |" in table
