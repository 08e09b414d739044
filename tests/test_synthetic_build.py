"""Structure of the synthetic GGUF files: keys, tensors, presets, determinism, writers, CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from llama_mtp import Model
from llama_mtp.gguf_info import inspect_gguf
from llama_mtp.synthetic import CHAT_TEMPLATE, PRESETS, build, get_preset, main, read_behaviour
from llama_mtp.synthetic.build import quant_plan
from llama_mtp.synthetic.quantblocks import encode, noise_blocks
from llama_mtp.synthetic.weights import tensor_specs

gguf = pytest.importorskip("gguf")

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(vocab_size=4096, progress=False)        # fast builds (truncated vocabulary)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def test_tiny_metadata(tiny_model_path: Path) -> None:
    r = inspect_gguf(tiny_model_path, max_array_items=None)
    md = r.metadata
    assert r.arch == "qwen35"
    assert md["qwen35.block_count"] == 5 and md["qwen35.nextn_predict_layers"] == 1
    assert md["qwen35.attention.recurrent_layers"] == [True, True, True, False, False]
    assert md["qwen35.full_attention_interval"] == 4
    assert md["qwen35.ssm.inner_size"] == 256 and md["qwen35.ssm.state_size"] == 64
    assert md["qwen35.ssm.group_count"] == 2 and md["qwen35.ssm.time_step_rank"] == 4
    assert md["qwen35.rope.dimension_count"] == 32
    assert md["qwen35.rope.dimension_sections"] == [6, 6, 4, 0]
    assert md["qwen35.attention.key_length"] == md["qwen35.attention.value_length"] == 128
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "qwen35"
    assert md["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert md["general.file_type"] == 7                       # Q8_0
    assert r.mtp.complete and r.mtp.mtp_blocks == [4]
    assert len(r.tensors) == 3 + 3 * 14 + 11 + 15


def test_every_tensor_is_nonzero(tiny_model_path: Path) -> None:
    """No weight tensor is (mostly) zeros: the first rows of each, dequantized."""
    report = inspect_gguf(tiny_model_path, max_array_items=0)
    raw = np.memmap(tiny_model_path, dtype=np.uint8, mode="r")
    for t in report.tensors:
        qt = gguf.GGMLQuantizationType[t.type.upper()]
        block, nbytes = gguf.GGML_QUANT_SIZES[qt]
        row_bytes = t.shape[0] // block * nbytes
        n_rows = min(64, t.n_elements // t.shape[0])
        data = np.array(raw[t.offset:t.offset + n_rows * row_bytes]).reshape(n_rows, row_bytes)
        values = gguf.quants.dequantize(data, qt).astype(np.float32).ravel()
        assert np.count_nonzero(values) > 0.9 * values.size, t.name


def test_model_loads_with_mtp(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_gpu_layers=0) as m:
        assert m.arch == "qwen35" and m.n_layer == 4 and m.n_mtp_layers == 1
        assert m.has_mtp and m.mtp_loaded and m.n_embd == 256 and m.n_vocab == 248320


def test_no_mtp_file(tiny_nomtp_path: Path) -> None:
    r = inspect_gguf(tiny_nomtp_path, max_array_items=None)
    assert "qwen35.nextn_predict_layers" not in r.metadata
    assert r.metadata["qwen35.block_count"] == 4
    assert r.metadata["qwen35.attention.recurrent_layers"] == [True, True, True, False]
    assert not any(t.name.startswith("blk.4.") for t in r.tensors)
    assert not r.mtp.present


def test_qwen36_27b_shapes() -> None:
    """The preset has the real Qwen3.6-27B dimensions and the converter's tensor count."""
    shape = get_preset("qwen3.6-27b")
    specs = {s.name: s.shape for s in tensor_specs(shape)}
    assert len(specs) == 866                                   # 48*14 + 16*11 + 3 + 15
    assert specs["token_embd.weight"] == (5120, 248320)
    assert specs["output.weight"] == (5120, 248320)
    assert specs["blk.0.attn_qkv.weight"] == (5120, 10240)
    assert specs["blk.0.attn_gate.weight"] == (5120, 6144)
    assert specs["blk.0.ssm_conv1d.weight"] == (4, 10240)
    assert specs["blk.0.ssm_out.weight"] == (6144, 5120)
    assert specs["blk.3.attn_q.weight"] == (5120, 12288)
    assert specs["blk.3.attn_k.weight"] == (5120, 1024)
    assert specs["blk.3.attn_output.weight"] == (6144, 5120)
    assert specs["blk.0.ffn_down.weight"] == (17408, 5120)
    assert specs["blk.64.nextn.eh_proj.weight"] == (10240, 5120)
    assert shape.n_rot == 64 and shape.rope_sections == [11, 11, 10, 0]
    n_params = sum(int(np.prod(s)) for s in specs.values())
    assert 27.0e9 < n_params < 27.6e9


def test_quant_plan_matches_llama_cpp_for_27b() -> None:
    """The per-tensor types of the direct Q4_K_M writer follow llama.cpp's own rules (checked
    against the vendored tree's snapshot of ggml-org/Qwen3.6-27B-GGUF when present)."""
    plan = quant_plan(get_preset("qwen3.6-27b"), "Q4_K_M")
    assert plan["output.weight"] == "Q6_K" and plan["token_embd.weight"] == "Q4_K"
    snapshot = ROOT / "third_party" / "llama.cpp" / "tests" / "snapshots" / "qwen3.6-27b.schema"
    if not snapshot.exists():
        pytest.skip("vendored llama.cpp snapshot not present")
    section: dict[str, str] = {}
    default = None
    lines = snapshot.read_text().splitlines()
    start = lines.index(next(x for x in lines if x.startswith("[Q4_K_M]")))
    default = lines[start].split()[1].upper()
    for line in lines[start + 1:]:
        if not line.strip():
            break
        name, typ = line.split()
        section[name] = typ.upper()
    trunk_2d = [s for s in tensor_specs(get_preset("qwen3.6-27b"))
                if len(s.shape) == 2 and not s.keep_f32 and not s.name.startswith("blk.64.")]
    for s in trunk_2d:
        assert plan[s.name] == section.get(s.name, default), s.name


def test_presets_validate() -> None:
    for name, shape in PRESETS.items():
        shape.validate()
        assert shape.n_embd % 256 == 0 and shape.n_ff % 256 == 0, name
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")


def test_same_arguments_same_bytes(tmp_path: Path) -> None:
    a = build(tmp_path / "a.gguf", "tiny", "Q8_0", **SMALL)
    b = build(tmp_path / "b.gguf", "tiny", "Q8_0", **SMALL)
    c = build(tmp_path / "c.gguf", "tiny", "Q8_0", seed=1, **SMALL)
    assert _sha256(a) == _sha256(b) != _sha256(c)


def test_same_arguments_same_bytes_direct_writer(tmp_path: Path) -> None:
    a = build(tmp_path / "a.gguf", "tiny", "Q4_K_M", method="direct", **SMALL)
    b = build(tmp_path / "b.gguf", "tiny", "Q4_K_M", method="direct", **SMALL)
    assert _sha256(a) == _sha256(b)
    types = {t.type for t in inspect_gguf(a, max_array_items=0).tensors}
    assert types == {"q4_K", "q6_K", "f32"}


def test_small_vocabulary_model_works(tmp_path: Path) -> None:
    path = build(tmp_path / "small.gguf", "tiny", "Q8_0", mtp_agreement=0.5, **SMALL)
    beh = read_behaviour(path)
    with Model(path, n_gpu_layers=0) as m:
        assert m.n_vocab == 4096
        assert m.detokenize(list(beh.script)).startswith(" The quick brown fox")


@pytest.mark.parametrize("qtype", ["Q4_K", "Q5_K", "Q6_K", "Q8_0"])
def test_block_writers_match_ggml_layout(qtype: str) -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((8, 512))).astype(np.float32)
    x[2] += np.sign(rng.standard_normal(512)).astype(np.float32)
    qt = gguf.GGMLQuantizationType[qtype]
    raw = np.frombuffer(encode(x, qtype), dtype=np.uint8).reshape(8, -1)
    y = gguf.quants.dequantize(raw, qt)
    rel = float(np.sqrt(((y - x) ** 2).mean() / (x ** 2).mean()))
    assert rel < {"Q4_K": 0.09, "Q5_K": 0.05, "Q6_K": 0.03, "Q8_0": 0.01}[qtype]
    noise = np.frombuffer(noise_blocks(rng, 512 * 64, qtype, 0.02), dtype=np.uint8)
    z = gguf.quants.dequantize(noise.reshape(64, -1), qt)
    assert abs(float(z.std()) - 0.02) < 0.002 and abs(float(z.mean())) < 0.002


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.gguf"
    assert main([str(out), "--quant", "Q8_0", "--vocab-size", "4096", "--mtp-agreement", "0.5",
                 "--behaviour", "chat", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    beh = read_behaviour(out)
    assert beh.kind == "chat" and beh.mtp_agreement == 0.5
    assert main([str(tmp_path / "x.gguf"), "--quant", "NOPE", "--quiet"]) == 2
    assert main([str(tmp_path / "y.gguf"), "--mtp-agreement", "2", "--quiet"]) == 2


def test_chat_template_renders() -> None:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()

    def fail(msg: str) -> None:
        raise ValueError(msg)

    env.globals["raise_exception"] = fail
    t = env.from_string(CHAT_TEMPLATE)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<think>\nhm\n</think>\n\nHello!"},
            {"role": "user", "content": "2+2?"}]
    assert t.render(messages=msgs, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n")
    assert t.render(messages=msgs, add_generation_prompt=True, enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    last = msgs[:2] + [{"role": "assistant", "content": "Hello!", "reasoning_content": "hm"}]
    assert t.render(messages=last).endswith(
        "<|im_start|>assistant\n<think>\nhm\n</think>\n\nHello!<|im_end|>\n")
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    calls = [{"role": "user", "content": "weather?"},
             {"role": "assistant", "content": "",
              "tool_calls": [{"function": {"name": "get_weather",
                                           "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "sunny"}]
    text = t.render(messages=calls, tools=tools, add_generation_prompt=True)
    assert "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n" \
           "</function>\n</tool_call><|im_end|>" in text
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>" in text
