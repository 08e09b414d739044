"""Runs mutants in child processes, in batches, and finds the culprit when a child dies.

A child runs a whole batch (importing llama_mtp once), writing a ``start`` line before each
mutant. When it dies, the mutant it had started is the suspect: it is run again alone in a new
child; if that dies too, it is the abort (recorded with its seed, strategy, signal and the
assertion text from stderr). If it passes alone, the crash needed the mutants before it in the
same process, and the batch prefix is bisected to the smallest set that still kills the child.
A child that dies after its last mutant (at exit) is bisected the same way. The rest of the
batch goes on in a new child.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHES = Path(__file__).resolve().parents[1]

# stderr lines that say why a process died
_WHY = re.compile(r"GGML_ASSERT|GGML_ABORT|error:|terminate called|what\(\)|Sanitizer|"
                  r"runtime error|Fatal Python error|Segmentation fault|Floating point exception|"
                  r"Aborted|std::|ERROR|SUMMARY|\.(?:c|cpp|h):\d+: ")
_ASSERT = re.compile(r"([\w./+-]+\.(?:c|cpp|h)):(\d+): (.*)")


@dataclass
class ChildRun:
    """What one child process did."""
    records: dict[int, dict[str, Any]]       # seed -> result record
    order: list[int]                         # seeds started, in order
    in_progress: int | None                  # started, no result: the child died running it
    stage: str | None                        # its last stage
    returncode: int | None
    hung: bool
    done: bool                               # wrote its final line
    stderr: str

    @property
    def died(self) -> bool:
        return self.hung or self.returncode != 0


def why(stderr: str, returncode: int | None, hung: bool) -> tuple[str, str]:
    """(class, text): a short, stable class for grouping (the assertion, or the signal) and the
    stderr lines that explain it."""
    lines = [ln for ln in stderr.splitlines() if _WHY.search(ln)]
    text = "\n".join(lines[-12:]) if lines else "\n".join(stderr.splitlines()[-12:])
    if hung:
        return "hang (timeout)", text
    # ggml_abort() prints "file:line: message" (GGML_ASSERT(...) failed, or GGML_ABORT's text)
    for ln in reversed(stderr.splitlines()):
        m = _ASSERT.search(ln)
        if m and not ln.startswith(" "):
            path = m.group(1).split("llama.cpp/", 1)[-1]
            return f"{path}:{m.group(2)}: {m.group(3).strip()[:160]}", text
    for ln in reversed(lines):
        if "terminate called" in ln or "what()" in ln:
            return ln.strip(), text
        if "Sanitizer" in ln and ("ERROR" in ln or "SUMMARY" in ln):
            return re.sub(r"0x[0-9a-f]+", "0x…", ln.strip()), text
        if "runtime error" in ln:
            return re.sub(r"^.*?([\w./+-]+:\d+:\d+: runtime error)", r"\1", ln.strip()), text
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"signal {name}", text
    return f"exit status {returncode}", text


@dataclass
class Finding:
    """A mutant that killed its process."""
    seed: int
    strategy: str
    detail: str
    stage: str | None
    kind: str                  # "abort" | "hang"
    returncode: int | None
    cls: str                   # grouping key: the assertion or the signal
    text: str                  # the stderr lines that explain it
    needs: list[int] = field(default_factory=list)   # other seeds that had to run first

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Runner:
    """Runs seeds against one base file.

    Args:
        base: the unmutated GGUF.
        batch_size: mutants per child process.
        jobs: child processes at a time.
        timeout_s: a mutant running longer than this is killed and recorded as a hang.
        memory_mb: address-space limit of a child (0: none; sanitizer builds need none).
        env: extra environment for the children (``LD_PRELOAD`` of a sanitizer runtime ...).
        strategy: only this strategy (the seed still picks everything else).
        nice: niceness added to the children.
    """

    def __init__(self, base: Path, *, batch_size: int = 64, jobs: int = 1, timeout_s: float = 60.0,
                 memory_mb: int = 6144, env: dict[str, str] | None = None,
                 strategy: str | None = None, nice: int = 0, gen_tokens: int = 4,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.base = base
        self.batch_size = batch_size
        self.jobs = jobs
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.env = dict(env or {})
        self.strategy = strategy
        self.nice = nice
        self.gen_tokens = gen_tokens
        self.progress = progress
        self.records: dict[int, dict[str, Any]] = {}
        self.findings: list[Finding] = []
        self.children = 0
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="fuzz-gguf-")
        self.workdir = Path(self._tmp.name)

    # -- one child ---------------------------------------------------------------------------
    def spawn(self, seeds: Sequence[int]) -> ChildRun:
        """Run ``seeds`` in one new child and report what happened."""
        with self._lock:
            self.children += 1
            n = self.children
        results = self.workdir / f"results-{n}.jsonl"
        job = self.workdir / f"job-{n}.json"
        errfile = self.workdir / f"stderr-{n}.txt"
        job.write_text(json.dumps({
            "base": str(self.base), "seeds": list(seeds), "results": str(results),
            "workdir": str(self.workdir), "strategy": self.strategy,
            "memory_mb": self.memory_mb, "gen_tokens": self.gen_tokens}))
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCHES), env.get("PYTHONPATH")]))
        env.setdefault("GGML_NO_BACKTRACE", "1")     # no gdb attach on an assertion: just stop
        env.setdefault("OMP_NUM_THREADS", "1")
        with open(errfile, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "fuzz.child", str(job)],
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                                    preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None)
            hung = False
            started_at = time.monotonic()
            seen = 0
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                # per-mutant timeout: the time since the last line of progress
                size = results.stat().st_size if results.exists() else 0
                if size != seen:
                    seen, started_at = size, time.monotonic()
                elif time.monotonic() - started_at > self.timeout_s:
                    hung = True
                    proc.kill()
                    proc.wait()
                    break
        records: dict[int, dict[str, Any]] = {}
        order: list[int] = []
        in_progress: int | None = None
        stage: str | None = None
        done = False
        if results.exists():
            for line in results.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue                     # a line cut by the death of the child
                if rec.get("done"):
                    done = True
                elif rec.get("start"):
                    in_progress, stage = rec["seed"], None
                    order.append(rec["seed"])
                elif "stage" in rec and "outcome" not in rec:
                    stage = rec["stage"]
                elif "outcome" in rec:
                    records[rec["seed"]] = rec
                    in_progress = None
        stderr = errfile.read_text(encoding="utf-8", errors="replace")[-20000:]
        for f in (results, job, errfile):
            f.unlink(missing_ok=True)
        return ChildRun(records, order, in_progress, stage, proc.returncode, hung, done, stderr)

    # -- a batch, with culprit search -------------------------------------------------------------
    def run_batch(self, seeds: Sequence[int]) -> None:
        remaining = list(seeds)
        while remaining:
            run = self.spawn(remaining)
            self._store(run.records)
            if not run.died:
                if not run.done:
                    raise RuntimeError("fuzz child exited without finishing its batch:\n" + run.stderr)
                return
            if run.in_progress is not None:
                culprit = run.in_progress
                prefix = [s for s in run.order if s != culprit]
                self._isolate(culprit, prefix, run)
                remaining = remaining[remaining.index(culprit) + 1:]
            elif run.order and len(run.records) == len(run.order):
                # every mutant finished; the process died at exit
                self._died_at_exit(run.order, run)
                remaining = [s for s in remaining if s not in run.records]
            else:
                raise RuntimeError("fuzz child died before its first mutant:\n" + run.stderr)

    def _isolate(self, culprit: int, prefix: list[int], first: ChildRun) -> None:
        alone = self.spawn([culprit])
        if alone.died:
            self._record_finding(culprit, alone, [])
            return
        self._store(alone.records)
        # passes alone: it needs (some of) the mutants run before it in the same process
        needs = self._bisect(prefix, lambda s: self.spawn([*s, culprit]).died)
        run = self.spawn([*needs, culprit]) if needs else first
        self._record_finding(culprit, run if run.died else first, needs)

    def _died_at_exit(self, order: list[int], run: ChildRun) -> None:
        needs = self._bisect(order, lambda s: self.spawn(s).died)
        rerun = self.spawn(needs)
        self._record_finding(needs[-1], rerun if rerun.died else run, needs[:-1])

    @staticmethod
    def _bisect(seeds: list[int], dies: Callable[[list[int]], bool]) -> list[int]:
        """A small subset of ``seeds`` for which ``dies`` still holds (halving)."""
        current = list(seeds)
        while len(current) > 1:
            half = len(current) // 2
            a, b = current[:half], current[half:]
            if dies(a):
                current = a
            elif dies(b):
                current = b
            else:
                break
        return current

    def _store(self, records: dict[int, dict[str, Any]]) -> None:
        with self._lock:
            self.records.update(records)
            if self.progress:
                self.progress(len(self.records), len(self.findings))

    def _record_finding(self, seed: int, run: ChildRun, needs: list[int]) -> None:
        from .mutate import Base, mutate
        base = Base(self.base.read_bytes())
        mutant = mutate(base, seed, self.strategy)
        cls, text = why(run.stderr, run.returncode, run.hung)
        finding = Finding(seed, mutant.strategy, mutant.detail[:300], run.stage,
                          "hang" if run.hung else "abort", run.returncode, cls, text, needs)
        with self._lock:
            self.findings.append(finding)
            self.records[seed] = {"seed": seed, "strategy": mutant.strategy,
                                  "detail": mutant.detail[:300], "outcome": finding.kind,
                                  "stage": run.stage, "class": cls}
            if self.progress:
                self.progress(len(self.records), len(self.findings))

    # -- everything -------------------------------------------------------------------------------
    def run(self, seeds: Iterable[int]) -> None:
        seeds = list(seeds)
        batches = [seeds[i:i + self.batch_size] for i in range(0, len(seeds), self.batch_size)]
        if self.jobs <= 1:
            for batch in batches:
                self.run_batch(batch)
            return
        queue = list(reversed(batches))
        errors: list[BaseException] = []

        def worker() -> None:
            while True:
                with self._lock:
                    if not queue or errors:
                        return
                    batch = queue.pop()
                try:
                    self.run_batch(batch)
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                    with self._lock:
                        errors.append(e)
                    return

        threads = [threading.Thread(target=worker) for _ in range(self.jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def close(self) -> None:
        self._tmp.cleanup()
