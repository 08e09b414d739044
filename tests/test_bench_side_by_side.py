"""benches/side_by_side.py's time-sliced mode: turns are taken, counted, and nothing is left stopped."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
import bench  # noqa: E402
import side_by_side  # noqa: E402

# one CPU-bound request per line: a fixed amount of pure-Python work, then a reply
BUSY = """
import sys
for line in sys.stdin:
    x = 0
    for i in range(3_000_000):
        x += i
    print(x, flush=True)
"""


class BusyEngine:
    """A stand-in contender: a process that computes for a while per request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.out: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def go(self) -> threading.Thread:
        def ask() -> None:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            if self.proc.stdout.readline().strip():
                self.out = {"finished": time.perf_counter()}

        th = threading.Thread(target=ask)
        th.start()
        return th

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_running_until_counts_only_turns_before_the_reply() -> None:
    spans = [(0.0, 1.0), (2.0, 3.0), (4.0, 5.0)]
    assert side_by_side.running_until(spans, 2.5) == pytest.approx(1.5)
    assert side_by_side.running_until(spans, 10.0) == pytest.approx(3.0)
    assert side_by_side.running_until(spans, 0.0) == 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGSTOP turns and /proc: Linux")
@pytest.mark.parametrize("n", [2, 3])  # side_by_side.py's pairs; benches/adaptive.py runs five
def test_sliced_turns_stop_the_other_processes_and_count_their_running_time(n: int) -> None:
    engines = [BusyEngine() for _ in range(n)]
    try:
        cpu0 = [bench.cpu_seconds(e.pid) for e in engines]
        t0 = time.perf_counter()
        running = side_by_side.run_sliced(engines, 0.05, first=n - 1)
        wall = time.perf_counter() - t0
        cpu = [bench.cpu_seconds(e.pid) - c for e, c in zip(engines, cpu0)]
        assert all(e.out for e in engines), "every request must be answered"
        assert all(r > 0 for r in running)
        # turns do not overlap: together they fit in the wall time
        assert sum(running) <= wall + 0.05
        # each computed only in its own turns: had they run at once (2 CPUs), each one's CPU
        # time would be about twice the turns counted for it (or more)
        for r, c in zip(running, cpu):
            assert c <= r * 1.4 + 0.05, (running, cpu)
        # nobody is left stopped
        assert all(state(e.pid) != "T" for e in engines)
    finally:
        for e in engines:
            e.close()
