"""A model spread over RPC servers (llama.cpp's ggml-rpc) on 127.0.0.1: the same tokens as a
local run, interoperability with llama.cpp's own rpc-server, and what happens when a server is
missing or dies."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

import llama_mtp
from llama_mtp import Model, ModelLoadError, SamplingParams, Speculator, synthetic
from tests.rpc_servers import LLAMA_CPP_RPC_SERVER, ROOT, RpcServer, free_port, wait_listening

ModelFactory = Callable[..., Path]
PROMPT = "Once upon a time"
# 4 of the tiny model's 6 offloadable layers (4 blocks + the MTP block + the output layer) go to
# the servers: blocks 0-1 and the input stay on the local CPU, so all three devices take part.
NGL = 4


def greedy(n: int) -> SamplingParams:
    return SamplingParams.greedy(max_tokens=n)


@pytest.fixture()
def llama_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """llama.cpp's INFO lines (load_tensors reports each device's share) in caplog."""
    before = llama_mtp.get_log_level()
    llama_mtp.set_log_level("INFO")
    try:
        with caplog.at_level(logging.INFO, logger="llama_mtp"):
            yield caplog
    finally:
        llama_mtp.set_log_level(before)


def model_buffers(text: str) -> dict[str, float]:
    """MiB of weights per RPC server, from llama.cpp's load_tensors lines."""
    return {m[1]: float(m[2]) for m in re.finditer(r"RPC\d+\[([\d.:]+)\] model buffer size =\s*([\d.]+) MiB", text)}


@pytest.mark.parametrize("speculator", [Speculator.none(), Speculator.mtp(2)], ids=["plain", "mtp"])
def test_split_over_two_servers_and_the_cpu_gives_the_local_tokens(
        tiny_model_path: Path, two_servers: tuple[RpcServer, RpcServer], llama_log: pytest.LogCaptureFixture,
        speculator: Speculator) -> None:
    a, b = two_servers
    with Model(tiny_model_path, n_ctx=512, n_threads=1) as local:
        expected = local.generate(PROMPT, greedy(48), speculator=speculator).tokens
        assert local.devices == []
    assert expected == synthetic.expected_continuation(tiny_model_path, local_tokens(tiny_model_path), 48)
    with Model(tiny_model_path, n_ctx=512, n_threads=1, n_gpu_layers=NGL,
               rpc_servers=[a.endpoint, b.endpoint]) as model:
        # (names are RPC<n>, numbered in the order servers were first used in the process)
        assert [(d.description, d.type) for d in model.devices] == [(a.endpoint, "rpc"), (b.endpoint, "rpc")]
        out = model.generate(PROMPT, greedy(48), speculator=speculator)
        assert out.tokens == expected
        if speculator.enabled:
            assert out.stats.num_drafts > 0 and out.stats.draft_n_accepted > 0
        again = model.generate(PROMPT, greedy(48), speculator=speculator)  # prefix reuse on the servers
        assert again.tokens == expected and again.stats.cache_n > 0
    shares = model_buffers(llama_log.text)
    assert shares.get(a.endpoint, 0) > 0 and shares.get(b.endpoint, 0) > 0, shares
    assert "CPU_Mapped model buffer size" in llama_log.text  # the local CPU keeps the first blocks


def local_tokens(path: Path) -> list[int]:
    with Model(path, vocab_only=True) as vocab:
        return vocab.tokenize(PROMPT, add_special=True, parse_special=True)


def test_tensor_split_moves_the_layers_between_servers(
        tiny_model_path: Path, two_servers: tuple[RpcServer, RpcServer], llama_log: pytest.LogCaptureFixture) -> None:
    a, b = two_servers
    shares = {}
    for split in ([1.0, 0.0], [1.0, 3.0], [3.0, 1.0]):
        llama_log.clear()
        with Model(tiny_model_path, n_ctx=256, n_threads=1, n_gpu_layers=NGL, tensor_split=split,
                   rpc_servers=[a.endpoint, b.endpoint]) as model:
            assert model.generate(PROMPT, greedy(8)).tokens == \
                synthetic.expected_continuation(tiny_model_path, local_tokens(tiny_model_path), 8)
        shares[tuple(split)] = model_buffers(llama_log.text)
    assert b.endpoint not in shares[(1.0, 0.0)]  # everything offloaded went to the first server
    assert shares[(1.0, 3.0)][a.endpoint] < shares[(3.0, 1.0)][a.endpoint]


def test_interoperates_with_llama_cpps_own_rpc_server(tiny_model_path: Path) -> None:
    if not LLAMA_CPP_RPC_SERVER.exists():
        pytest.skip(f"llama.cpp's rpc-server is not built ({LLAMA_CPP_RPC_SERVER}): "
                    "python benches/refs.py rpc-server")
    theirs, ours = RpcServer(llama_cpp=True), RpcServer()
    try:
        with Model(tiny_model_path, n_ctx=512, n_threads=1) as local:
            expected = [local.generate(PROMPT, greedy(32), speculator=s).tokens
                        for s in (Speculator.none(), Speculator.mtp(2))]
        with Model(tiny_model_path, n_ctx=512, n_threads=1, n_gpu_layers=NGL,
                   rpc_servers=[theirs.endpoint, ours.endpoint]) as model:
            got = [model.generate(PROMPT, greedy(32), speculator=s).tokens
                   for s in (Speculator.none(), Speculator.mtp(2))]
        assert got == expected
    finally:
        theirs.stop()
        ours.stop()


def test_llama_cpps_own_client_uses_our_server(tiny_model_path: Path) -> None:
    """llama.cpp's llama-completion --rpc, against `llama-mtp rpc-server`."""
    completion = ROOT / "benches" / ".cache" / "tools" / "bin" / "llama-completion"
    if not completion.exists():
        pytest.skip(f"llama.cpp's llama-completion is not built ({completion}): python benches/refs.py tools")
    ours = RpcServer()
    try:
        cmd = [str(completion), "-m", str(tiny_model_path), "-p", PROMPT, "-n", "16", "--temp", "0", "--top-k", "1",
               "-t", "1", "-c", "256", "-no-cnv", "--no-warmup", "--no-display-prompt", "-ngl", str(NGL), "-v"]
        local = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        remote = subprocess.run(cmd + ["--rpc", ours.endpoint], capture_output=True, text=True, timeout=300)
    finally:
        ours.stop()
    if "RPC not supported in this build" in remote.stderr:  # tools built before refs.py turned RPC on
        pytest.skip(f"llama.cpp's tools in {completion.parent} have no RPC: python benches/refs.py tools --force")
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr[-3000:]
    assert f"[{ours.endpoint}] model buffer size" in remote.stderr  # its layers went to our server
    with Model(tiny_model_path, n_ctx=256, n_threads=1) as model:
        expected = model.generate(PROMPT, greedy(16)).text
    assert remote.stdout.strip() == local.stdout.strip() and remote.stdout.strip().startswith(expected.strip())


def test_an_unreachable_server_is_a_model_load_error_naming_it(tiny_model_path: Path,
                                                                two_servers: tuple[RpcServer, RpcServer]) -> None:
    a, _ = two_servers
    nobody = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError, match=re.escape(nobody)):
        Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=[a.endpoint, nobody])
    assert time.monotonic() - t0 < 15
    with pytest.raises(ValueError, match="host:port"):
        Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=["127.0.0.1"])
    with pytest.raises(ValueError, match="listed twice"):
        Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=[a.endpoint, a.endpoint])
    # the good server is still usable afterwards
    with Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=[a.endpoint]) as model:
        assert len(model.generate(PROMPT, greedy(4)).tokens) == 4


def test_a_server_that_is_not_an_rpc_server_is_a_model_load_error(tiny_model_path: Path) -> None:
    """It accepts and hangs up: ggml-rpc's handshake fails (it would abort the process)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def hang_up() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=hang_up, daemon=True)
    t.start()
    try:
        with pytest.raises(ModelLoadError, match=f"127.0.0.1:{port}"):
            Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=[f"127.0.0.1:{port}"])
    finally:
        stop.set()
        t.join()
        listener.close()


CHILD = textwrap.dedent("""
    import gc, json, os, signal, sys, time
    from llama_mtp import DecodeError, Model, SamplingParams, Speculator
    path, a, b, pid_b, mode = sys.argv[1:6]
    spec = Speculator.mtp(2) if mode.endswith("mtp") else Speculator.none()
    report = {}
    model = Model(path, n_ctx=4096, n_threads=1, n_gpu_layers=4, rpc_servers=[a, b])
    prompt = "Once upon a time"
    t_kill = None
    if mode.startswith("idle"):
        model.generate(prompt, SamplingParams.greedy(max_tokens=8), speculator=spec)
        os.kill(int(pid_b), signal.SIGKILL)
        t_kill = time.monotonic()
        time.sleep(0.5)
    chunks = 0
    try:
        for chunk in model.stream(prompt, SamplingParams.greedy(max_tokens=3000), speculator=spec):
            chunks += 1
            if chunks == 5 and t_kill is None:
                os.kill(int(pid_b), signal.SIGKILL)
                t_kill = time.monotonic()
        report["first"] = "finished"
    except DecodeError as e:
        report["first"] = "DecodeError"
        report["message"] = str(e)
        report["seconds_after_kill"] = time.monotonic() - t_kill
    report["chunks"] = chunks
    t0 = time.monotonic()
    try:
        model.generate(prompt, SamplingParams.greedy(max_tokens=8), speculator=spec)
        report["second"] = "ok"
    except DecodeError:
        report["second"] = "DecodeError"
    report["second_seconds"] = time.monotonic() - t0
    if mode == "idle-exit":       # left to the interpreter's exit, model still open
        report["close_seconds"] = 0.0
        print(json.dumps(report), flush=True)
        sys.exit(0)
    t0 = time.monotonic()
    if mode.startswith("idle"):
        del model          # dropped without close(): freed by the garbage collector
        gc.collect()
    else:
        model.close()
    report["close_seconds"] = time.monotonic() - t0
    print(json.dumps(report), flush=True)
""")


@pytest.mark.parametrize("mode", ["generating-plain", "generating-mtp", "idle-plain", "idle-exit"])
def test_a_server_killed_during_generation_ends_the_call_with_decode_error(
        tiny_model_path: Path, two_servers: tuple[RpcServer, RpcServer], mode: str) -> None:
    """In a child process: ggml-rpc aborts the process on a broken connection unless our
    failsafe (csrc/ggml_rpc) holds; the child must survive, report and exit 0."""
    a, b = two_servers
    out = subprocess.run([sys.executable, "-c", CHILD, str(tiny_model_path), a.endpoint, b.endpoint,
                          str(b.pid), mode], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["first"] == "DecodeError", report
    assert b.endpoint in report["message"]
    assert report["seconds_after_kill"] < 10
    if mode.startswith("generating"):
        assert report["chunks"] >= 5
    assert report["second"] == "DecodeError" and report["second_seconds"] < 5
    assert report["close_seconds"] < 30


LOAD_CHILD = textwrap.dedent("""
    import json, os, signal, subprocess, sys, threading, time
    sys.path.insert(0, sys.argv[2])
    from tests.rpc_servers import RpcServer
    from llama_mtp import Model, ModelLoadError
    outcomes = []
    for delay in (0.2, 0.8, 1.6, 3.0):
        a, b = RpcServer(), RpcServer()
        timer = threading.Timer(delay, os.kill, (b.pid, signal.SIGKILL))
        timer.start()
        try:
            with Model(sys.argv[1], n_ctx=256, n_threads=1, n_gpu_layers=4, rpc_servers=[a.endpoint, b.endpoint]):
                outcomes.append("loaded")
        except ModelLoadError as e:
            outcomes.append("ModelLoadError" if b.endpoint in str(e) else "ModelLoadError without the server: " + str(e))
        timer.join()
        a.stop(); b.stop()
    print(json.dumps(outcomes), flush=True)
""")


def test_a_server_killed_while_the_model_loads_is_a_model_load_error(tiny_model_path: Path) -> None:
    """Killed at a few moments of the load (connecting, sending weights, making the context):
    a ModelLoadError naming it, or a model that loaded before; never an abort."""
    out = subprocess.run([sys.executable, "-c", LOAD_CHILD, str(tiny_model_path), str(Path(__file__).parents[1])],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    outcomes = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(outcomes) <= {"loaded", "ModelLoadError"}, outcomes
    assert "ModelLoadError" in outcomes


def test_rpc_server_command_line(tiny_model_path: Path) -> None:
    port = free_port()
    # a non-loopback address needs the explicit flag (the protocol has no authentication)
    refused = subprocess.run([sys.executable, "-m", "llama_mtp", "rpc-server", "--host", "0.0.0.0",
                              "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "--allow-remote" in refused.stderr
    proc = subprocess.Popen([sys.executable, "-m", "llama_mtp", "rpc-server", "--host", "0.0.0.0", "--port",
                             str(port), "--allow-remote", "-t", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, proc)  # type: ignore[arg-type]
        out = subprocess.run([sys.executable, "-m", "llama_mtp", "run", "-m", str(tiny_model_path), "-c", "256",
                              "-t", "1", "-ngl", str(NGL), "--rpc", f"127.0.0.1:{port}", "--temp", "0", "-n", "8",
                              "-p", PROMPT], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        listed = subprocess.run([sys.executable, "-m", "llama_mtp", "run", "--list-devices", "--rpc",
                                 f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and f"127.0.0.1:{port}" in listed.stdout, listed.stderr
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert "no authentication" in err
    with Model(tiny_model_path, n_ctx=256, n_threads=1) as local:
        assert out.stdout.startswith(local.generate(PROMPT, greedy(8)).text)
    # the same server, in-process API: a bad port is a ValueError before anything starts
    from llama_mtp.rpc import serve
    with pytest.raises(ValueError, match="allow_remote"):
        serve("0.0.0.0", port)
    with pytest.raises(ValueError):
        serve("127.0.0.1", 0)
    help_ = subprocess.run([sys.executable, "-m", "llama_mtp.rpc", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert help_.returncode == 0 and "--cache" in help_.stdout and "--threads" in help_.stdout


def test_rpc_server_port_in_use() -> None:
    first = RpcServer()
    try:
        second = subprocess.run([sys.executable, "-m", "llama_mtp", "rpc-server", "--port", str(first.port)],
                                capture_output=True, text=True, timeout=60)
    finally:
        first.stop()
    assert second.returncode == 1 and f"could not listen on 127.0.0.1:{first.port}" in second.stderr


def test_a_draft_model_follows_the_target_or_its_own_devices(
        synthetic_model: ModelFactory, two_servers: tuple[RpcServer, RpcServer],
        llama_log: pytest.LogCaptureFixture) -> None:
    """llama-server's placement of a separate draft model: the target's devices, or -devd's."""
    a, b = two_servers
    target = synthetic_model(vocab_size=4096)
    draft = synthetic_model(vocab_size=4096, mtp=False)
    with Model(target, n_ctx=512, n_threads=1) as local:
        expected = local.generate(PROMPT, greedy(24)).tokens
    # the target's offloaded layers all on a (b is one of its devices, with a share of 0)
    with Model(target, n_ctx=512, n_threads=1, n_gpu_layers=NGL, rpc_servers=[a.endpoint, b.endpoint],
               tensor_split=[1.0, 0.0]) as model:
        for devices, holder in (((b.endpoint,), b.endpoint), ((), a.endpoint), (("none",), None)):
            llama_log.clear()
            spec = Speculator.draft_model(draft, n_max=2, devices=devices)
            out = model.generate(PROMPT, greedy(24), speculator=spec)
            assert out.tokens == expected and out.stats.num_drafts > 0, devices
            shares = model_buffers(llama_log.text)  # only the draft model was loaded here
            assert list(shares) == ([holder] if holder else []), (devices, shares)
        with pytest.raises(ValueError, match="unknown device 'CUDA7'"):
            model.generate(PROMPT, greedy(4), speculator=Speculator.draft_model(draft, devices=("CUDA7",)))
