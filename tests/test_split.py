"""Splitting a model: over devices (split_mode / tensor_split / main_gpu, llama.cpp's -sm / -ts /
-mg) and over files (gguf-split's ``-00001-of-0000N.gguf`` parts)."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

from llama_mtp import Model, ModelLoadError, SamplingParams, synthetic, system_info
from llama_mtp.cli.args import parse_tensor_split
from llama_mtp.gguf_info import inspect_gguf
from tests.gguf_edit import split
from tests.rpc_servers import RpcServer

PROMPT = "Once upon a time"
CPU_ONLY = not any(d.type in ("gpu", "igpu") for d in system_info().devices)


def greedy(n: int) -> SamplingParams:
    return SamplingParams.greedy(max_tokens=n)


@pytest.mark.parametrize("kwargs, match", [
    ({"split_mode": "rows"}, "split_mode"),
    ({"split_mode": "tensor"}, "experimental"),  # aborts on qwen35 graphs in this llama.cpp
    ({"tensor_split": [1.0, -1.0]}, ">= 0"),
    ({"tensor_split": [math.nan]}, "finite"),
    ({"tensor_split": [1.0] * 17}, "at most 16"),
    ({"tensor_split": "3,1"}, "list of numbers"),
    ({"main_gpu": -2}, "main_gpu"),
])
def test_bad_split_options_are_value_errors(tiny_model_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        Model(tiny_model_path, n_ctx=256, n_threads=1, **kwargs)  # type: ignore[arg-type]


@pytest.mark.skipif(not CPU_ONLY, reason="the no-op applies to a machine without GPU")
def test_on_a_cpu_only_machine_split_options_are_accepted_no_ops_that_say_so(
        tiny_model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = synthetic.expected_continuation(tiny_model_path, tokens(tiny_model_path), 8)
    for kwargs in ({"split_mode": "row", "tensor_split": [3, 1], "main_gpu": 1}, {"split_mode": "none"},
                   {"tensor_split": [1.0]}):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="llama_mtp"):
            with Model(tiny_model_path, n_ctx=256, n_threads=1, **kwargs) as model:  # type: ignore[arg-type]
                assert model.devices == []
                assert model.generate(PROMPT, greedy(8)).tokens == expected
        assert "no effect" in caplog.text and "CPU" in caplog.text, kwargs
        for key in kwargs:
            assert key in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llama_mtp"):
        Model(tiny_model_path, n_ctx=256, n_threads=1).close()
    assert "no effect" not in caplog.text  # defaults: nothing to say


def tokens(path: Path) -> list[int]:
    with Model(path, vocab_only=True) as vocab:
        return vocab.tokenize(PROMPT, add_special=True, parse_special=True)


def test_split_options_are_checked_against_the_devices(
        tiny_model_path: Path, two_servers: tuple[RpcServer, RpcServer]) -> None:
    """With two RPC servers there are two devices: three proportions, or main_gpu 2, are wrong."""
    a, b = two_servers
    servers = [a.endpoint, b.endpoint]
    with pytest.raises(ValueError, match=r"3 entries but the model has 2 device"):
        Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=servers, tensor_split=[1, 1, 1])
    with pytest.raises(ValueError, match="main_gpu 2 is not a device"):
        Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=servers, main_gpu=2)
    with pytest.raises(ValueError, match="RPC servers do not"):  # row split needs split buffers (CUDA)
        Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=servers, split_mode="row")
    # split_mode none keeps the whole offloaded part on main_gpu (here: the second server)
    with Model(tiny_model_path, n_ctx=256, n_threads=1, rpc_servers=servers, split_mode="none",
               main_gpu=1) as model:
        assert [d.description for d in model.devices] == [b.endpoint]
        assert model.generate(PROMPT, greedy(8)).tokens == \
            synthetic.expected_continuation(tiny_model_path, tokens(tiny_model_path), 8)


def test_tensor_split_parsing_as_llama_cpp() -> None:
    assert parse_tensor_split("3,1") == [3.0, 1.0]
    assert parse_tensor_split("3/1") == [3.0, 1.0]
    assert parse_tensor_split(None) is None
    with pytest.raises(ValueError, match="-ts"):
        parse_tensor_split("3,x")


def test_cli_split_flags(tiny_model_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "llama_mtp", "run", "-m", str(tiny_model_path), "-c", "256", "-t", "1",
                          "-sm", "row", "-ts", "3,1", "-mg", "0", "--temp", "0", "-n", "8", "-p", PROMPT],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    bad = subprocess.run([sys.executable, "-m", "llama_mtp", "run", "-m", str(tiny_model_path), "-ts", "1,-1",
                          "-n", "4", "-p", PROMPT], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "tensor_split" in bad.stderr


# --- split GGUF files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def split_model(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The tiny model as three parts; the MTP block and the output layer are in the last one."""
    parts = split(tiny_model_path, tmp_path_factory.mktemp("split") / "tiny-Q8_0.gguf", max_tensors=30)
    assert [p.name for p in parts] == [f"tiny-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    return parts


def test_a_split_gguf_loads_from_its_first_part(tiny_model_path: Path, split_model: list[Path]) -> None:
    report = inspect_gguf(split_model[0])
    whole = inspect_gguf(tiny_model_path)
    assert report.parts == [str(p) for p in split_model]
    assert sorted(t.name for t in report.tensors) == sorted(t.name for t in whole.tensors)
    assert {t.part for t in report.tensors} == {0, 1, 2}
    assert report.file_size == sum(p.stat().st_size for p in split_model)
    assert report.mtp.complete  # its nextn tensors are in the last part
    with Model(split_model[0], n_ctx=256, n_threads=1) as model, \
            Model(tiny_model_path, n_ctx=256, n_threads=1) as reference:
        assert model.has_mtp and model.n_params == reference.n_params
        from llama_mtp import Speculator
        for spec in (Speculator.none(), Speculator.mtp(2)):
            assert model.generate(PROMPT, greedy(24), speculator=spec).tokens == \
                reference.generate(PROMPT, greedy(24), speculator=spec).tokens
    out = subprocess.run([sys.executable, "-m", "llama_mtp", "inspect", str(split_model[0])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "3 parts" in out.stdout, out.stdout + out.stderr


def test_a_missing_or_wrong_part_is_a_model_load_error(split_model: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="open the first part"):
        Model(split_model[1], n_ctx=256, n_threads=1)
    incomplete = [tmp_path / p.name for p in split_model]
    for src, dst in zip(split_model[:2], incomplete):
        dst.symlink_to(src)
    with pytest.raises(ModelLoadError, match=r"part 3 is missing: .*tiny-Q8_0-00003-of-00003\.gguf"):
        Model(incomplete[0], n_ctx=256, n_threads=1)
    renamed = tmp_path / "renamed.gguf"
    renamed.symlink_to(split_model[0])
    with pytest.raises(ModelLoadError, match="-00001-of-00003.gguf"):
        Model(renamed, n_ctx=256, n_threads=1)
