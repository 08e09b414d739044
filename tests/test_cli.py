"""The `llama-mtp` command, run as a subprocess on synthetic models, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from llama_mtp import Model
from tests.gguf_edit import rewrite

ModelFactory = Callable[..., Path]
CARD_FLAGS = ["-ngl", "999", "-c", "2048", "--temp", "0", "--top-k", "1", "-t", "1"]


def cli(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONIOENCODING="ascii")  # our output must not depend on the console
    return subprocess.run([sys.executable, "-m", "llama_mtp", *args], capture_output=True, text=True,
                          encoding="utf-8", input=stdin, timeout=timeout, env=env)


def test_help_lists_the_subcommands() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for cmd in ("run", "chat", "inspect", "bench", "demo", "synth", "serve"):
        assert cmd in out.stdout


def test_run_with_the_cards_flags(tiny_model_path: Path) -> None:
    out = cli("run", "-m", str(tiny_model_path), *CARD_FLAGS, "--spec-type", "draft-mtp",
              "--spec-draft-n-max", "2", "--spec-draft-ngl", "999", "-n", "32", "-p", "The quick brown")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(" fox jumps over a lazy dog.")
    assert "prompt eval" in out.stderr and "generation" in out.stderr and "draft" in out.stderr
    assert "accepted" in out.stderr


def test_run_json_schema(tiny_model_path: Path) -> None:
    out = cli("run", "-m", str(tiny_model_path), *CARD_FLAGS, "--spec-type", "draft-mtp",
              "--spec-draft-n-max", "3", "-n", "24", "-p", "The quick brown", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["spec_type"] == "draft-mtp" and doc["spec_draft_n_max"] == 3
    assert doc["finish_reason"] == "length" and len(doc["tokens"]) == 24
    t = doc["timings"]
    for key in ("prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms",
                "predicted_per_second", "cache_n", "draft_n", "draft_n_accepted", "num_drafts",
                "mean_acceptance_length", "acceptance_per_position", "draft_acceptance_rate"):
        assert key in t
    assert t["predicted_n"] == 24 and t["draft_n"] >= t["draft_n_accepted"] > 0
    with Model(tiny_model_path, vocab_only=True) as vocab:
        assert doc["text"] == vocab.detokenize(doc["tokens"])


def test_run_same_output_with_and_without_mtp(tiny_model_path: Path) -> None:
    texts = []
    for spec in (["--spec-type", "none"], ["--spec-type", "draft-mtp", "--spec-draft-n-max", "2"]):
        out = cli("run", "-m", str(tiny_model_path), *CARD_FLAGS, *spec, "-n", "40", "-p", "Kestrel", "--json")
        assert out.returncode == 0, out.stderr
        texts.append(json.loads(out.stdout)["tokens"])
    assert texts[0] == texts[1]


def test_chinese_prompt_file_arrives_intact(tiny_model_path: Path, tmp_path: Path) -> None:
    prompt = "用中文简单介绍一下你自己。没有人知道答案"
    path = tmp_path / "prompt.txt"
    path.write_text(prompt, encoding="utf-8")
    out = cli("run", "-m", str(tiny_model_path), *CARD_FLAGS, "-n", "8", "-f", str(path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["prompt"] == prompt
    with Model(tiny_model_path, vocab_only=True) as vocab:
        assert doc["timings"]["prompt_n"] == len(vocab.tokenize(prompt, add_special=True, parse_special=True))
    # The synthetic model continues "答案" with "。" then cycles: the prompt's last token was seen.
    assert doc["text"].startswith("。")
    arg = cli("run", "-m", str(tiny_model_path), *CARD_FLAGS, "-n", "8", "-p", prompt, "--json")
    assert json.loads(arg.stdout)["prompt"] == prompt


def test_run_argument_errors(tiny_model_path: Path, tmp_path: Path) -> None:
    assert cli("run", "-m", str(tiny_model_path)).returncode != 0  # neither -p nor -f
    bad_type = cli("run", "-m", str(tiny_model_path), "-p", "x", "--spec-type", "draft-magic")
    assert bad_type.returncode == 2 and "invalid choice" in bad_type.stderr
    missing = cli("run", "-m", str(tmp_path / "missing.gguf"), "-p", "x")
    assert missing.returncode == 1 and "No such model file" in missing.stderr
    overflow = cli("run", "-m", str(tiny_model_path), "-c", "32", "-t", "1", "-p", "word " * 100)
    assert overflow.returncode == 1 and "raise n_ctx" in overflow.stderr


def test_bench_errors_are_reported_cleanly(tmp_path: Path) -> None:
    missing = cli("bench", "-m", str(tmp_path / "missing.gguf"), "--tiers", "short", "-r", "1")
    assert missing.returncode == 1 and "No such model file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_run_mtp_on_a_model_without_mtp(tiny_nomtp_path: Path) -> None:
    out = cli("run", "-m", str(tiny_nomtp_path), *CARD_FLAGS, "-n", "4", "-p", "x", "--spec-type", "draft-mtp")
    assert out.returncode == 1
    assert "no MTP head" in out.stderr and "Traceback" not in out.stderr


def test_inspect_good_files(tiny_model_path: Path, tiny_nomtp_path: Path) -> None:
    out = cli("inspect", str(tiny_model_path), "--json")
    assert out.returncode == 0, out.stdout
    doc = json.loads(out.stdout)
    assert doc["loadable"] and doc["architecture"] == "qwen35"
    assert doc["mtp"]["complete"] and doc["mtp"]["nextn_predict_layers"] == 1
    assert doc["chat_template"] and doc["n_tensors"] > 50 and doc["file_size"] == tiny_model_path.stat().st_size
    assert sum(doc["quantization_mix"].values()) == doc["n_tensors"]
    human = cli("inspect", str(tiny_model_path))
    assert human.returncode == 0 and "loadable      : yes" in human.stdout
    plain = json.loads(cli("inspect", str(tiny_nomtp_path), "--json").stdout)
    assert plain["loadable"] and not plain["mtp"]["present"]


def test_inspect_broken_files(synthetic_model: ModelFactory, tmp_path: Path) -> None:
    # A 4,096-token vocabulary keeps the rewritten copies small and fast to write.
    tiny_model_path = synthetic_model(vocab_size=4096)
    tiny_nomtp_path = synthetic_model(vocab_size=4096, mtp=False)
    data = tiny_model_path.read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) // 2])
    magic = tmp_path / "magic.gguf"
    magic.write_bytes(b"GGML" + data[4:4096])
    with Model(tiny_nomtp_path, vocab_only=True) as m:
        n_layer = int(m.metadata["qwen35.block_count"])  # type: ignore[arg-type]
    meta_only = rewrite(tiny_nomtp_path, tmp_path / "meta_only.gguf",
                        set_uint32={"qwen35.nextn_predict_layers": 1, "qwen35.block_count": n_layer + 1},
                        drop_keys=("qwen35.attention.recurrent_layers",))
    tensors_only = rewrite(tiny_model_path, tmp_path / "tensors_only.gguf",
                           drop_keys=("qwen35.nextn_predict_layers",))
    cases = {truncated: "truncated", magic: "not a GGUF", meta_only: "no blk.N.nextn",
             tensors_only: "nextn_predict_layers"}
    for path, reason in cases.items():
        out = cli("inspect", str(path))
        assert out.returncode == 1, (path.name, out.stdout)
        assert reason in out.stdout, (path.name, out.stdout)
        doc = json.loads(cli("inspect", str(path), "--json").stdout)
        assert doc["loadable"] is False and doc["problems"]


def test_chat_reasoning_split(chat_model_path: Path) -> None:
    out = cli("run", "-m", str(chat_model_path), *CARD_FLAGS, "-n", "96", "--jinja", "-p", "Hi!", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["reasoning_content"].strip() and "</think>" not in doc["content"]
    assert doc["content"].startswith("Hello!") and doc["finish_reason"] == "eos"
    assert doc["timings"]["reasoning_chars"] == len(doc["reasoning_content"])
    assert doc["timings"]["content_chars"] == len(doc["content"])
    off = json.loads(cli("run", "-m", str(chat_model_path), *CARD_FLAGS, "-n", "96", "--jinja",
                         "--reasoning", "off", "-p", "Hi!", "--json").stdout)
    assert off["reasoning_content"] == "" and off["content"].startswith("Hello!")
    streamed = cli("run", "-m", str(chat_model_path), *CARD_FLAGS, "-n", "96", "--jinja", "-p", "Hi!",
                   "--spec-type", "draft-mtp", "--spec-draft-n-max", "2")
    assert streamed.returncode == 0 and streamed.stdout.strip() == doc["content"].strip()


def test_interactive_chat(chat_model_path: Path) -> None:
    out = cli("chat", "-m", str(chat_model_path), *CARD_FLAGS, "-n", "96", "--hide-reasoning", "--timings",
              stdin="Hi!\nAnd again?\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Hello!") == 2
    reused = [line for line in out.stderr.splitlines() if "reused from cache" in line]
    assert len(reused) == 2 and not reused[1].rstrip().endswith(" 0 reused from cache")


def test_chat_keeps_reasoning_apart_from_the_answer(chat_model_path: Path) -> None:
    """Piped (no terminal, so no dimming), the reasoning still stands apart, as in llama-cli."""
    out = cli("chat", "-m", str(chat_model_path), *CARD_FLAGS, "-n", "96", stdin="Hi!\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("[Start thinking]\n") == 1 and "\n[End thinking]\n\nHello!" in out.stdout
    thinking = out.stdout.split("[Start thinking]\n")[1].split("\n[End thinking]")[0]
    assert thinking.strip() and "Hello!" not in thinking and "\x1b[" not in out.stdout
    run = cli("run", "-m", str(chat_model_path), *CARD_FLAGS, "-n", "96", "--jinja", "-p", "Hi!")
    assert run.returncode == 0 and run.stdout.startswith("Hello!")
    assert "[Start thinking]\n" in run.stderr and "[End thinking]" in run.stderr


def test_demo_on_a_given_model(tiny_model_path: Path) -> None:
    out = cli("demo", "-m", str(tiny_model_path), "-n", "24", "-t", "1", "-c", "1024")
    assert out.returncode == 0, out.stderr
    assert "outputs identical: yes" in out.stdout
    assert "tok/s with MTP (x" in out.stdout and "tok/s adaptive (x" in out.stdout
    assert 'n_max "auto"' in out.stdout and "draft lengths chosen:" in out.stdout


@pytest.mark.timeout(900)  # the bench subprocess alone may take 600 s
def test_bench_writes_table_json_and_chart(tiny_model_path: Path, tmp_path: Path) -> None:
    out = cli("bench", "-m", str(tiny_model_path), "--tiers", "short,300", "-r", "2", "-n", "16",
              "--long-n-predict", "4", "--spec-draft-n-max", "1,2", "-t", "1", "-o", str(tmp_path),
              "--ignore-eos", timeout=600)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "bench.md").read_text()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith(f"| {tiny_model_path.name} |")]
    assert sorted((r[1], r[2]) for r in rows) == sorted(
        (tier, variant) for tier in ("short", "ctx300") for variant in ("non-MTP", "MTP1", "MTP2"))
    for r in rows:  # Prompt tok/s, Generation tok/s (min–max), Draft acceptance, Speed-up
        assert float(r[4]) > 0 and float(r[5].split()[0]) > 0
        if r[2] == "non-MTP":
            assert (r[6], r[7]) == ("-", "x1.00")
        else:
            assert r[6].endswith("%") and r[7].startswith("x")
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert {r["variant"] for r in doc["rows"]} == {"non-MTP", "MTP1", "MTP2"}
    assert {r["tier"] for r in doc["rows"]} == {"short", "ctx300"}
    assert len(doc["runs"]) == 2 * 2 * 3
    assert all(r["predicted_n"] in (16, 4) for r in doc["runs"])
    png = (tmp_path / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_synth_writes_a_loadable_model(tmp_path: Path) -> None:
    path = tmp_path / "s.gguf"
    out = cli("synth", str(path), "--preset", "tiny", "--quant", "Q8_0", "--mtp-agreement", "0.5", "--quiet")
    assert out.returncode == 0, out.stderr
    assert cli("inspect", str(path)).returncode == 0
