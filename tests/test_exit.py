"""How a process ends: every way a user can leave work running must end with exit status 0 --
never the abort (status 134, "terminate called without an active exception") that a thread
re-taking the GIL during the interpreter's finalization caused. Each scenario runs in a fresh
interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PRELUDE = """
import sys, threading, time, asyncio
from llama_mtp import Model, SamplingParams, Speculator
path = sys.argv[1]
sp = SamplingParams(temperature=0.8, top_k=40, max_tokens=8, seed=1)
long = SamplingParams(temperature=0.8, top_k=40, max_tokens=None, ignore_eos=True, seed=1)
"""

SCENARIOS = {
    "break_out_of_a_stream": """
m = Model(path, n_ctx=1024, n_threads=2)
for ch in m.stream("prompt 0 ", sp, speculator=Speculator.mtp(2)):
    break
print("done")
""",
    "break_out_of_a_chat_stream": """
m = Model(path, n_ctx=1024, n_threads=1)
for d in m.chat_stream([{"role": "user", "content": "hi"}], long, speculator=Speculator.mtp(2)):
    break
print("done")
""",
    "a_cancelled_astream_task": """
m = Model(path, n_ctx=1024, n_threads=1)
async def consume():
    async for c in m.astream("prompt 0 ", long, speculator=Speculator.mtp(2)):
        pass
async def main():
    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
asyncio.run(main())
print("done")
""",
    "an_astream_abandoned_with_its_event_loop": """
m = Model(path, n_ctx=1024, n_threads=1)
async def main():
    stream = m.astream("prompt 0 ", long)
    await stream.__anext__()      # started, never finished nor closed
asyncio.run(main())
print("done")
""",
    "an_iterator_never_consumed": """
m = Model(path, n_ctx=1024, n_threads=1)
stream = m.stream("prompt 0 ", long, speculator=Speculator.mtp(2))
print("done")
""",
    "close_while_another_thread_streams": """
m = Model(path, n_ctx=1024, n_threads=1)
errors = []
def consume():
    try:
        for c in m.stream("prompt 0 ", long):
            pass
    except Exception as exc:
        errors.append(type(exc).__name__)
t = threading.Thread(target=consume)
t.start()
time.sleep(0.5)
m.close()
t.join(30)
assert not t.is_alive() and errors == ["ModelClosedError"], errors
print("done")
""",
    "daemon_threads_inside_native_waits_at_exit": """
m = Model(path, n_ctx=2048, n_threads=1, n_parallel=2)
def stream():
    for c in m.stream("prompt 0 ", long):
        pass
def generate():
    m.generate("prompt 1 ", long)
def queued():
    m.generate("prompt 2 ", long)       # waits for a slot
for f in (stream, generate, queued):
    threading.Thread(target=f, daemon=True).start()
time.sleep(1.0)
print("done")
""",
    "a_model_never_closed_with_work_queued": """
m = Model(path, n_ctx=1024, n_threads=1, n_parallel=1)
streams = [m.stream("prompt %d " % i, long) for i in range(4)]
next(streams[0])
print("done")
""",
}


def run_script(body: str, model: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(PRELUDE) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_process_exits_cleanly(name: str, tiny_model_path: Path) -> None:
    result = run_script(SCENARIOS[name], tiny_model_path)
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stderr[-2000:]}"
    assert result.stdout.strip().endswith("done")
    assert "terminate called" not in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_ctrl_c_during_generate(tiny_model_path: Path) -> None:
    """SIGINT while a blocking generate runs: KeyboardInterrupt within a step, then a clean exit."""
    code = textwrap.dedent(PRELUDE) + textwrap.dedent("""
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the parent ignores it
        m = Model(path, n_ctx=4096, n_threads=1)
        print("ready", flush=True)
        try:
            m.generate("prompt 0 ", long)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print(len(m.generate("prompt 0 ", sp).tokens), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tiny_model_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert out.split() == ["interrupted", "8"]
