"""Mixture-of-experts models (``qwen35moe``, Qwen3.6-35B-A3B's architecture): the synthetic
MoE presets, their behaviour whichever experts are picked, lossless MTP, the MoE placement
options (``--cpu-moe``, ``--n-cpu-moe``, ``-ot`` and the draft forms) and ``inspect``."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from llama_mtp import Model, SamplingParams, Speculator, set_log_level
from llama_mtp.gguf_info import inspect_gguf, weights_per_token
from llama_mtp.tensor_placement import buffer_types, parse_override_tensor
from llama_mtp.synthetic import (PRESETS, expected_continuation, get_preset, quant_plan,
                                 read_behaviour)
from llama_mtp.synthetic.weights import tensor_specs

from .gguf_edit import rewrite
from .synthetic_gen import generate

gguf = pytest.importorskip("gguf")

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["Once upon a time", "def main():\n    print(", "你好，世界", " The", "1234"]
Factory = Callable[..., Path]


@pytest.fixture(scope="session")
def moe_path(synthetic_model: Factory) -> Path:
    """``tiny-moe``, Q8_0, MTP agreement 0.8."""
    return synthetic_model(preset="tiny-moe")


def _tokens(path: Path, text: str) -> list[int]:
    with Model(path, vocab_only=True) as m:
        return m.tokenize(text, parse_special=True)


def _dequantized_rows(path: Path, name: str, first_row: int, n_rows: int) -> np.ndarray:
    """Rows ``first_row ..`` of tensor ``name`` (rows of ne0 values; a 3-D expert tensor's
    expert ``j`` holds rows ``j * ne1 .. (j + 1) * ne1 - 1``), dequantized."""
    t = next(t for t in inspect_gguf(path, max_array_items=0).tensors if t.name == name)
    qt = gguf.GGMLQuantizationType[t.type.upper()]
    block, nbytes = gguf.GGML_QUANT_SIZES[qt]
    row_bytes = t.shape[0] // block * nbytes
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    start = t.offset + first_row * row_bytes
    data = np.array(raw[start:start + n_rows * row_bytes]).reshape(n_rows, row_bytes)
    return np.asarray(gguf.quants.dequantize(data, qt), dtype=np.float32).reshape(n_rows, -1)


# -- the presets ----------------------------------------------------------------------------------

def test_tiny_moe_file(moe_path: Path) -> None:
    r = inspect_gguf(moe_path, max_array_items=None)
    md = r.metadata
    assert r.arch == "qwen35moe"
    assert md["qwen35moe.expert_count"] == 16 and md["qwen35moe.expert_used_count"] == 4
    assert md["qwen35moe.expert_feed_forward_length"] == 256
    assert md["qwen35moe.expert_shared_feed_forward_length"] == 256
    assert "qwen35moe.feed_forward_length" not in md
    assert md["qwen35moe.block_count"] == 5 and md["qwen35moe.nextn_predict_layers"] == 1
    assert r.mtp.complete and r.mtp.mtp_blocks == [4]
    types = {t.name: t.type for t in r.tensors}
    assert len(types) == 96
    assert types["blk.0.ffn_gate_inp.weight"] == types["blk.4.ffn_gate_inp_shexp.weight"] == "f32"
    assert types["blk.0.ffn_down_exps.weight"] == "q8_0"
    moe = r.moe
    assert moe is not None and moe.expert_count == 16 and moe.expert_used_count == 4
    assert moe.expert_tensors == 15                        # 3 per block, MTP block included
    assert moe.expert_params == 15 * 16 * 256 * 256
    assert moe.expert_quantization_mix == {"q8_0": 15}
    assert moe.per_token["routed_experts"] == 4 * 3 * 4 * 256 * 256   # 4 blocks x 3 x 4 of 16
    with Model(moe_path, n_gpu_layers=0) as m:
        assert m.arch == "qwen35moe" and m.n_layer == 4 and m.has_mtp and m.mtp_loaded
        assert m.n_vocab == 248320 and m.n_params == r.n_params


def test_dense_file_has_no_moe_info(tiny_model_path: Path) -> None:
    assert inspect_gguf(tiny_model_path, max_array_items=0).moe is None


def test_qwen36_35b_a3b_shapes() -> None:
    """The real Qwen3.6-35B-A3B dimensions and the converter's tensor count (733 + the MTP
    block's 20, as in the published GGUFs with MTP)."""
    shape = get_preset("qwen3.6-35b-a3b")
    assert shape.arch == "qwen35moe" and shape.block_count == 41
    specs = {s.name: s.shape for s in tensor_specs(shape)}
    assert len(specs) == 753
    assert specs["blk.0.ffn_gate_inp.weight"] == (2048, 256)
    assert specs["blk.0.ffn_gate_exps.weight"] == specs["blk.0.ffn_up_exps.weight"] == (2048, 512, 256)
    assert specs["blk.0.ffn_down_exps.weight"] == (512, 2048, 256)
    assert specs["blk.0.ffn_gate_shexp.weight"] == (2048, 512)
    assert specs["blk.0.ffn_down_shexp.weight"] == (512, 2048)
    assert specs["blk.0.ffn_gate_inp_shexp.weight"] == (2048, 1)
    assert specs["blk.0.attn_qkv.weight"] == (2048, 8192)
    assert specs["blk.0.attn_gate.weight"] == (2048, 4096)
    assert specs["blk.3.attn_q.weight"] == (2048, 8192) and specs["blk.3.attn_k.weight"] == (2048, 512)
    assert specs["blk.40.nextn.eh_proj.weight"] == (4096, 2048)
    assert specs["blk.40.ffn_down_exps.weight"] == (512, 2048, 256)
    total = sum(int(np.prod(s)) for s in specs.values())
    assert 35.0e9 < total < 36.0e9
    per_token = weights_per_token(((n, int(np.prod(s))) for n, s in specs.items()), 40, 256, 8)
    assert 2.8e9 < sum(per_token.values()) < 3.1e9          # "A3B"


def test_quant_plan_matches_llama_cpp_for_moe() -> None:
    """The per-tensor Q4_K_M types of the MoE direct writer follow llama.cpp's rules: checked
    against the vendored tree's snapshot of Qwen3.5-397B-A17B (qwen35moe, 60 layers, 512
    experts), the same layout family as the 35B-A3B."""
    snapshot = ROOT / "third_party" / "llama.cpp" / "tests" / "snapshots" / "qwen3.5-397b-a17b.schema"
    if not snapshot.exists():
        pytest.skip("vendored llama.cpp snapshot not present")
    lines = snapshot.read_text().splitlines()
    start = lines.index(next(x for x in lines if x.startswith("[Q4_K_M]")))
    default = lines[start].split()[1].upper()
    section: dict[str, str] = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        name, typ = line.split()
        section[name] = typ.upper()
    shape = get_preset("qwen3.6-35b-a3b").with_(
        name="397b", n_embd=4096, n_layer=60, n_head=32, n_head_kv=2, linear_n_k_heads=16,
        linear_n_v_heads=64, n_expert=512, n_expert_used=10, n_ff_exp=1024, n_ff_shexp=1024, n_mtp=0)
    plan = quant_plan(shape, "Q4_K_M")
    quantized = [s for s in tensor_specs(shape) if len(s.shape) >= 2 and not s.keep_f32]
    assert any(len(s.shape) == 3 for s in quantized)
    for s in quantized:
        assert plan[s.name] == section.get(s.name, default), s.name


def _shares(name: str) -> dict[str, float]:
    shape = get_preset(name)
    parts = weights_per_token(((s.name, s.n_values) for s in tensor_specs(shape)),
                              shape.n_layer, shape.n_expert, shape.n_expert_used)
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()}


def test_bench_moe_has_the_real_models_cost_proportions() -> None:
    """What one token reads splits like Qwen3.6-35B-A3B's (within 1.5 points per part), and the
    file is ~12x what a token reads, as there."""
    bench, real = _shares("bench-moe"), _shares("qwen3.6-35b-a3b")
    for part in ("attention", "routed_experts", "shared_expert", "output"):
        assert abs(bench[part] - real[part]) < 0.015, (part, bench[part], real[part])
    for name in ("bench-moe", "qwen3.6-35b-a3b"):
        shape = get_preset(name)
        specs = tensor_specs(shape)
        total = sum(s.n_values for s in specs)
        active = sum(weights_per_token(((s.name, s.n_values) for s in specs), shape.n_layer,
                                       shape.n_expert, shape.n_expert_used).values())
        assert 11.0 < total / active < 13.5, name


def test_moe_presets_validate() -> None:
    for name in ("tiny-moe", "bench-moe", "qwen3.6-35b-a3b"):
        shape = PRESETS[name]
        shape.validate()
        assert shape.is_moe and shape.n_ff == 0
        assert shape.n_embd % 256 == 0 and shape.n_ff_exp % 256 == 0 and shape.n_ff_shexp % 256 == 0
    with pytest.raises(ValueError, match="n_expert_used"):
        get_preset("tiny-moe").with_(n_expert_used=17).validate()
    with pytest.raises(ValueError, match="shared expert"):
        get_preset("tiny-moe").with_(n_ff_shexp=0).validate()


# -- routing and weights ----------------------------------------------------------------------------

def test_router_routes(moe_path: Path) -> None:
    """The first layer's router, fed the script tokens' (normalised) embeddings, spreads them
    over the experts: every expert is some token's pick, no expert is everyone's, and the
    tokens' expert sets differ."""
    beh = read_behaviour(moe_path)
    emb = np.stack([_dequantized_rows(moe_path, "token_embd.weight", t, 1)[0] for t in beh.script])
    x = emb / np.sqrt((emb ** 2).mean(axis=1, keepdims=True))
    norm = _dequantized_rows(moe_path, "blk.0.post_attention_norm.weight", 0, 1)[0]
    router = _dequantized_rows(moe_path, "blk.0.ffn_gate_inp.weight", 0, 16)    # (16, 256)
    logits = (x * norm) @ router.T
    top = np.argsort(-logits, axis=1)[:, :4]
    counts = np.bincount(top.ravel(), minlength=16)
    assert (counts > 0).all() and counts.max() < 0.6 * len(beh.script)
    assert len({tuple(sorted(r)) for r in top}) > 0.8 * len(beh.script)


def test_every_expert_holds_weights(moe_path: Path) -> None:
    """Each expert of each expert tensor (MTP block included) holds random, non-zero weights."""
    r = inspect_gguf(moe_path, max_array_items=0)
    for t in r.tensors:
        if "_exps." not in t.name:
            continue
        per_expert = t.shape[1]
        for j in range(t.shape[2]):
            v = _dequantized_rows(moe_path, t.name, j * per_expert, 8)
            assert np.count_nonzero(v) > 0.9 * v.size and float(v.std()) > 1e-4, (t.name, j)


# -- behaviour ---------------------------------------------------------------------------------

def test_greedy_output_is_known(moe_path: Path) -> None:
    for text in PROMPTS:
        prompt = _tokens(moe_path, text)
        assert generate(moe_path, prompt, 48).tokens == expected_continuation(moe_path, prompt, 48)


def test_greedy_output_after_a_long_random_prompt(moe_path: Path) -> None:
    rng = random.Random(7)
    prompt = [rng.randrange(0, 248044) for _ in range(6000)]
    assert generate(moe_path, prompt, 24).tokens == expected_continuation(moe_path, prompt, 24)


@pytest.mark.parametrize("used", [1, 16])
def test_behaviour_holds_whichever_experts_are_chosen(moe_path: Path, tmp_path: Path,
                                                      used: int) -> None:
    """The same file with the router picking 1 expert, or all 16, per token (only
    ``expert_used_count`` changed): the same greedy output, with and without MTP."""
    edited = rewrite(moe_path, tmp_path / f"used{used}.gguf",
                     set_uint32={"qwen35moe.expert_used_count": used})
    assert inspect_gguf(edited, max_array_items=0).moe.expert_used_count == used  # type: ignore[union-attr]
    beh = read_behaviour(moe_path)
    prompt = _tokens(moe_path, "Once upon a time")
    assert generate(edited, prompt, 48).tokens == beh.continuation(prompt, 48)
    assert generate(edited, prompt, 48, n_max=2).tokens == beh.continuation(prompt, 48)


LOSSLESS = [("Q8_0", a, {}) for a in (0.0, 0.5, 0.8, 1.0)] + [
    ("Q4_K_M", 0.8, {"method": "direct"}), ("Q6_K", 0.8, {"requantize_from": "F16"}),
    ("Q2_K", 0.8, {"requantize_from": "F16"})]


@pytest.mark.parametrize("quant,agreement,kwargs", LOSSLESS,
                         ids=[f"{q}-a{a}" for q, a, _ in LOSSLESS])
def test_mtp_is_lossless(synthetic_model: Factory, quant: str, agreement: float,
                         kwargs: dict[str, Any]) -> None:
    """MTP n_max 1, 2, 3 on a MoE model: the tokens of plain greedy decoding (= the known
    continuation), at the acceptance the behaviour predicts."""
    path = synthetic_model(preset="tiny-moe", quant=quant, mtp_agreement=agreement, **kwargs)
    beh = read_behaviour(path)
    prompt = _tokens(path, "Once upon a time")
    expected = beh.continuation(prompt, 160)
    assert generate(path, prompt, 160).tokens == expected
    for n_max in (1, 2, 3):
        run = generate(path, prompt, 160, n_max=n_max)
        assert run.tokens == expected, n_max
        simulated = beh.acceptance(prompt[-1], 160, n_max).rate
        assert abs(run.acceptance - simulated) <= 0.05, (n_max, run.acceptance, simulated)


def test_chat_on_a_moe_model(synthetic_model: Factory) -> None:
    path = synthetic_model(preset="tiny-moe", behaviour="chat")
    with Model(path, n_gpu_layers=0, n_threads=1) as m:
        r = m.chat([{"role": "user", "content": "Hi there!"}],
                   SamplingParams(temperature=0, top_k=1, max_tokens=64),
                   speculator=Speculator.mtp(2))
    assert r.reasoning_content.strip() and r.content.strip() == "Hello! How can we assist you today?"
    assert r.stats.draft_n > 0


# -- placement options ------------------------------------------------------------------------------

def _overridden(path: Path, **kwargs: Any) -> list[str]:
    """llama.cpp's own debug lines naming the tensors whose buffer type it overrode."""
    lines: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "buffer type overridden" in record.getMessage():
                lines.append(record.getMessage())

    grab = Grab(level=logging.DEBUG)
    native = logging.getLogger("llama_mtp.llama_cpp")
    native.addHandler(grab)
    set_log_level("DEBUG")
    try:
        with Model(path, n_gpu_layers=0, n_threads=1, **kwargs):
            pass
    finally:
        set_log_level("WARNING")
        native.removeHandler(grab)
    return lines


def test_placement_reaches_llama_cpp(moe_path: Path) -> None:
    """--cpu-moe overrides every expert tensor (MTP block's too), --n-cpu-moe 2 those of blocks
    0 and 1, -ot exactly what its pattern matches; nothing without options."""
    assert _overridden(moe_path) == []
    assert len(_overridden(moe_path, cpu_moe=True)) == 15
    n2 = _overridden(moe_path, n_cpu_moe=2)
    assert len(n2) == 6 and all(("blk.0." in x or "blk.1." in x) for x in n2)
    ot = _overridden(moe_path, override_tensor=[(r"blk\.[23]\.ffn_up_exps", "CPU")])
    assert len(ot) == 2 and all("ffn_up_exps" in x for x in ot)
    # 4 trunk blocks x 2 shared-expert matrices, and all 20 tensors of the MTP block (blk.4)
    assert len(_overridden(moe_path, override_tensor=r"ffn_(gate|up)_shexp=CPU,blk\.4\.=CPU")) == 28


def test_generation_is_unchanged_by_placement(moe_path: Path) -> None:
    beh = read_behaviour(moe_path)
    prompt = _tokens(moe_path, "Once upon a time")
    with Model(moe_path, n_gpu_layers=0, n_threads=1, cpu_moe=True, n_cpu_moe=2,
               override_tensor={r"attn_qkv": "CPU"}) as m:
        out = m.generate(prompt, SamplingParams(temperature=0, top_k=1, max_tokens=32),
                         speculator=Speculator.mtp(2, cpu_moe=False))
        assert list(out.tokens) == beh.continuation(prompt, 32)


def test_bad_placement_is_a_clear_error(moe_path: Path) -> None:
    assert buffer_types()[0] == "CPU" or "CPU" in buffer_types()
    with pytest.raises(ValueError, match="not a valid regular expression"):
        Model(moe_path, override_tensor=[("ffn_(up", "CPU")])
    with pytest.raises(ValueError, match=r"unknown buffer type 'CUDA7'.*known buffer types: .*CPU"):
        Model(moe_path, override_tensor="exps=CUDA7")
    with pytest.raises(ValueError, match="PATTERN=BUFFER"):
        Model(moe_path, override_tensor="ffn_up_exps")
    with pytest.raises(ValueError, match="n_cpu_moe"):
        Model(moe_path, n_cpu_moe=-1)
    with pytest.raises(ValueError, match="pair"):
        Model(moe_path, override_tensor=[("a", "CPU", "x")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unknown buffer type"):
        Speculator.mtp(2, override_tensor=[("exps", "NOPE")])
    with pytest.raises(ValueError, match="n_cpu_moe"):
        Speculator.draft_model(moe_path, n_cpu_moe=-2)
    assert parse_override_tensor("a=CPU,b\\.c=CUDA0") == [("a", "CPU"), ("b\\.c", "CUDA0")]


def test_draft_placement(moe_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The -draft forms place a separately loaded draft model (here the MoE file drafting for
    itself, draft-simple); for the MTP head inside the model file they do nothing, and say so."""
    with caplog.at_level(logging.WARNING, logger="llama_mtp"):
        spec = Speculator.mtp(2, cpu_moe=True)
    assert spec.cpu_moe and "no effect" in caplog.text
    assert Speculator.mtp(2, override_tensor="exps=CPU").override_tensor == (("exps", "CPU"),)
    beh = read_behaviour(moe_path)
    prompt = _tokens(moe_path, "Once upon a time")
    draft = Speculator.draft_model(moe_path, n_max=2, cpu_moe=True,
                                   override_tensor=[(r"blk\.0\.", "CPU")])
    with Model(moe_path, n_gpu_layers=0, n_threads=1) as m:
        out = m.generate(prompt, SamplingParams(temperature=0, top_k=1, max_tokens=24),
                         speculator=draft)
    assert list(out.tokens) == beh.continuation(prompt, 24)
    assert out.stats.draft_n > 0 and out.stats.draft_n_accepted == out.stats.draft_n


def test_rpc_buffer_types_are_checked_at_load() -> None:
    """A Speculator is made before any model connects its RPC servers: an RPC server's buffer
    type passes its check, and is checked when the draft model loads (unknown here: a ValueError
    naming the known ones)."""
    spec = Speculator.draft_model(ROOT / "README.md", override_tensor="exps=RPC0[127.0.0.1:1]")
    assert spec.override_tensor == (("exps", "RPC0[127.0.0.1:1]"),)
    with pytest.raises(ValueError, match="unknown buffer type 'RPC7'"):
        Speculator.draft_model(ROOT / "README.md", override_tensor="exps=RPC7")


def test_cli_draft_placement_flags() -> None:
    """-otd / -cmoed / -ncmoed (and llama.cpp's long names) reach the Speculator; -ot / -cmoe /
    -ncmoe the Model."""
    from llama_mtp.cli import build_parser
    from llama_mtp.cli.args import model_kwargs, speculator_from

    a = build_parser().parse_args([
        "run", "-m", "x.gguf", "-p", "x", "--spec-type", "draft-simple", "-md", str(ROOT / "README.md"),
        "-otd", r"blk\.0\.=CPU,b=CPU", "--override-tensor-draft", "c=CPU", "-cmoed", "--n-cpu-moe-draft", "3",
        "-ot", "exps=CPU", "-ncmoe", "2"])
    spec = speculator_from(a)
    assert spec.override_tensor == ((r"blk\.0\.", "CPU"), ("b", "CPU"), ("c", "CPU"))
    assert spec.cpu_moe and spec.n_cpu_moe == 3
    kwargs = model_kwargs(a)
    assert kwargs["override_tensor"] == (("exps", "CPU"),)
    assert kwargs["cpu_moe"] is False and kwargs["n_cpu_moe"] == 2


# -- command line ---------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llama_mtp", *args], capture_output=True,
                          text=True, encoding="utf-8", timeout=600)


def test_cli_inspect_shows_experts(moe_path: Path) -> None:
    res = _cli("inspect", str(moe_path))
    assert res.returncode == 0, res.stderr
    assert "architecture  : qwen35moe" in res.stdout
    assert "experts       : 16 routed, 4 per token, width 256; shared expert width 256" in res.stdout
    assert "quantization  : experts q8_0: 15; other tensors" in res.stdout
    info = json.loads(_cli("inspect", str(moe_path), "--json").stdout)
    assert info["loadable"] and info["moe"]["expert_count"] == 16
    assert info["moe"]["expert_tensors"] == 15 and info["moe"]["active_params"] < info["n_params"]


def test_cli_run_with_placement_flags(moe_path: Path) -> None:
    res = _cli("run", "-m", str(moe_path), "-p", "Once upon a time", "-n", "12", "--temp", "0",
               "--top-k", "1", "-t", "1", "-cmoe", "-ncmoe", "2", "-ot", r"blk\.3\.ffn_up_exps=CPU",
               "-ot", "attn_qkv=CPU", "--spec-type", "draft-mtp", "--spec-draft-n-max", "2")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(" The quick brown fox")
    res = _cli("run", "-m", str(moe_path), "-p", "x", "-n", "2", "-ot", "exps=NOPE")
    assert res.returncode == 1 and "known buffer types: CPU" in res.stderr


def test_cli_bench_on_a_moe_model(moe_path: Path, tmp_path: Path) -> None:
    res = _cli("bench", "-m", str(moe_path), "--tiers", "short", "-r", "1", "-n", "16",
               "--spec-draft-n-max", "1,2", "-t", "1", "-cmoe", "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert {r["variant"] for r in doc["rows"]} >= {"non-MTP", "MTP1", "MTP2"}
