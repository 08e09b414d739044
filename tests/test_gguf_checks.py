"""Files that llama.cpp would abort on (GGML_ASSERT / GGML_ABORT / SIGFPE inside the loader, the
graph or a kernel) are refused by our own check (csrc/gguf_checks.cpp) with a ModelLoadError
that names the key or tensor.

Each case is the minimal file of one abort class: the fuzzer's base model (a complete qwen35
model with an MTP head) with one edit. The comment on each says what llama.cpp does with it.
Classes marked "fuzz" were found by benches/fuzz_gguf.py before the check existed, "reading" by
reading the code the file reaches; "defensive" ones are refused by llama.cpp already in this
minimal form (by a tensor shape) but reach an assertion in a file whose tensors agree with them.
Each abort claimed here was reproduced on the build without the checks.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llama_mtp import Model, ModelLoadError, SamplingParams, Speculator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
from fuzz.base import BASES  # noqa: E402
from fuzz.gguf_struct import GGUFStruct, GGUFType, parse, relayout, serialize  # noqa: E402
from fuzz.mutate import reshape  # noqa: E402

from tests.conftest import SyntheticFactory  # noqa: E402

T = GGUFType
Edit = Callable[[GGUFStruct], None]


@pytest.fixture(scope="module")
def base(synthetic_model: SyntheticFactory) -> Path:
    args = dict(BASES["qwen35"])
    return synthetic_model(preset=args.pop("preset"), quant=args.pop("quant"),
                           mtp_agreement=args.pop("mtp_agreement"), **args)


def edited(base: Path, tmp_path: Path, edit: Edit) -> Path:
    g = parse(base.read_bytes())
    edit(g)
    out = tmp_path / "edited.gguf"
    out.write_bytes(serialize(g))
    return out


def u32(key: str, value: int) -> Edit:
    return lambda g: g.set(key, T.UINT32, value)


def tokens(change: Callable[[list[bytes]], None]) -> Edit:
    def edit(g: GGUFStruct) -> None:
        kv = g.kv("tokenizer.ggml.tokens")
        assert kv is not None and isinstance(kv.value, list)
        items = [bytes(x) for x in kv.value if isinstance(x, bytes)]
        change(items)
        g.set("tokenizer.ggml.tokens", T.ARRAY, list(items), T.STRING)
    return edit


def dup_token(items: list[bytes]) -> None:
    items[100] = items[50]


def empty_collision(items: list[bytes]) -> None:
    items[7] = b""                      # llama.cpp names it "[EMPTY_7]" ...
    items[9] = b"[EMPTY_7]"             # ... which this token already is


def tensor_type(name: str, ggml_type: int) -> Edit:
    """Tensor ``name`` stored as ``ggml_type`` (its bytes cut or repeated to the new size), the
    data section laid out again so that every other tensor keeps a valid offset."""
    def edit(g: GGUFStruct) -> None:
        t = g.tensor(name)
        assert t is not None
        old = (list(t.dims), t.ggml_type)
        t.ggml_type = ggml_type
        relayout(g, {t.name: old})
    return edit


def coherent(**changes: int) -> Edit:
    """Hyperparameters changed with every tensor shape that depends on them (the fuzzer's
    "coherent" strategy): llama.cpp's shape checks pass and the file reaches the graph."""
    return lambda g: reshape(g, "qwen35", changes) and None


def moe_relabel(g: GGUFStruct) -> None:
    for i, kv in enumerate(g.kvs):
        if kv.key.startswith(b"qwen35."):
            g.kvs[i] = type(kv)(b"qwen35moe." + kv.key[len(b"qwen35."):], kv.vtype, kv.value, kv.subtype)
    g.set("general.architecture", T.STRING, b"qwen35moe")


CASES: list[tuple[str, Edit, str]] = [
    # fuzz: llama-vocab.cpp GGML_ASSERT(id_to_token.size() == token_to_id.size())
    ("duplicate token", tokens(dup_token), r"tokenizer\.ggml\.tokens has the string .* twice \(tokens 50 and 100\)"),
    ("empty token named like another", tokens(empty_collision), r"'\[EMPTY_7\]' twice \(tokens 7 and 9\)"),
    # fuzz: ggml-cpu ops.cpp rope GGML_ASSERT(n_dims <= ne0) at the first decode
    ("rope dims above head size", u32("qwen35.rope.dimension_count", 130),
     r"qwen35\.rope\.dimension_count = 130 but the head size .* is 128"),
    # fuzz: a hang, not an abort: rope with n_dims = 0 steps i0 += n_dims - 2 backwards forever
    ("zero rope dims", u32("qwen35.rope.dimension_count", 0), r"rope\.dimension_count = 0"),
    # fuzz: ops.cpp GGML_ASSERT(n_dims % 2 == 0)
    ("odd rope dims", u32("qwen35.rope.dimension_count", 33), r"rope\.dimension_count = 33"),
    # fuzz: ops.cpp ggml_mrope_cache_init GGML_ASSERT(sect_dims <= ne0)
    ("rope sections above head size",
     lambda g: g.set("qwen35.rope.dimension_sections", T.ARRAY, [6, 6, 4, 200], T.INT32),
     r"rope\.dimension_sections = \[6, 6, 4, 200\]"),
    # fuzz: ops.cpp GGML_ASSERT(sections[0] > 0 || sections[1] > 0 || sections[2] > 0)
    ("rope sections only in the fourth",
     lambda g: g.set("qwen35.rope.dimension_sections", T.ARRAY, [0, 0, 0, 16], T.INT32),
     r"rope\.dimension_sections = \[0, 0, 0, 16\]"),
    # reading (a check that predates the fuzzer): (i0/2) % sect_dims, a division by zero
    ("rope sections all zero",
     lambda g: g.set("qwen35.rope.dimension_sections", T.ARRAY, [0, 0, 0, 0], T.INT32),
     r"rope\.dimension_sections = \[0, 0, 0, 0\]"),
    # fuzz: ggml.c GGML_ASSERT(a->ne[d] == b->ne[d]) reshaping the DeltaNet state
    ("DeltaNet inner size", u32("qwen35.ssm.inner_size", 128),
     r"qwen35\.ssm\.inner_size = 128 but qwen35\.ssm\.state_size x qwen35\.ssm\.time_step_rank = 64 x 4 = 256"),
    # fuzz (coherent): delta-net-base.cpp GGML_ASSERT(H_v % H_k == 0), 3 value heads on 2 key heads
    ("DeltaNet heads", coherent(R=3), r"time_step_rank = 3 is not a multiple of .*group_count = 2"),
    # fuzz: llama-model.cpp GGML_ASSERT(n_layer_all > 0 && n_layer_all <= LLAMA_MAX_LAYERS)
    ("too many blocks", u32("qwen35.block_count", 513), r"qwen35\.block_count = 513; expected 1\.\.512"),
    ("no blocks", u32("qwen35.block_count", 0), r"qwen35\.block_count = 0"),
    # reading: GGML_ASSERT(n_layer_nextn <= n_layer_all)
    ("more MTP layers than blocks", u32("qwen35.nextn_predict_layers", 6),
     r"nextn_predict_layers = 6 but qwen35\.block_count = 5"),
    # fuzz: GGML_ASSERT(n_expert_used_max <= n_expert)
    ("experts used in a dense model", u32("qwen35.expert_used_count", 1),
     r"expert_used_count = 1 but qwen35\.expert_count = 0"),
    # fuzz: GGML_ASSERT(n_expert <= LLAMA_MAX_EXPERTS)
    ("too many experts", lambda g: (g.set("qwen35.expert_count", T.UINT32, 1025),
                                    g.set("qwen35.expert_used_count", T.UINT32, 2)) and None,
     r"expert_count = 1025; expected 0\.\.1024"),
    # fuzz: GGML_ASSERT(n_expert_used_max > 0)
    ("experts but none used", u32("qwen35.expert_count", 4), r"expert_count = 4 but .*expert_used_count is 0"),
    # fuzz: GGML_ASSERT(n_expert_groups == 0)
    ("expert groups in a dense model", u32("qwen35.expert_group_count", 3), r"expert_group_count = 3 in a model without experts"),
    # fuzz: GGML_ASSERT(rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED)
    ("unknown RoPE scaling", lambda g: g.set("qwen35.rope.scaling.type", T.STRING, b"bogus"),
     r"rope\.scaling\.type = 'bogus'; expected one of none, linear, yarn, longrope"),
    # fuzz: ops.cpp rms_norm GGML_ASSERT(eps >= 0.0f)
    ("negative norm epsilon",
     lambda g: g.set("qwen35.attention.layer_norm_rms_epsilon", T.FLOAT32, -1e-6),
     r"layer_norm_rms_epsilon = -0\.000001"),
    ("NaN norm epsilon",
     lambda g: g.set("qwen35.attention.layer_norm_rms_epsilon", T.FLOAT32, math.nan),
     r"layer_norm_rms_epsilon = -?nan"),
    # reading: (i + 1) % full_attention_interval, a division by zero (SIGFPE)
    ("full attention interval 0",
     lambda g: (g.drop("qwen35.attention.recurrent_layers"),
                g.set("qwen35.full_attention_interval", T.UINT32, 0)) and None,
     r"full_attention_interval = 0"),
    # fuzz: SIGFPE in qwen35moe load_arch_tensors (n_ff / n_expert_used with no experts)
    ("dense file labelled qwen35moe", moe_relabel, r"qwen35moe\.expert_count is 0 or missing"),
    # fuzz: ggml-cpu binary-ops.cpp GGML_ABORT("binary_op: unsupported types ... src1: f16")
    ("f16 vector", tensor_type("blk.2.ssm_dt.bias", 1), r"tensor blk\.2\.ssm_dt\.bias is f16; llama\.cpp's elementwise kernels need .* f32"),
    ("f16 DeltaNet decay", tensor_type("blk.1.ssm_a", 1), r"tensor blk\.1\.ssm_a is f16"),
    # fuzz: ggml-cpu has no dot product for q8_1 / q8_K (activation quantizations): a null
    # function call (SIGSEGV) in mul_mat at the first decode
    ("q8_K matrix", tensor_type("blk.2.ffn_down.weight", 15), r"tensor blk\.2\.ffn_down\.weight is q8_K, a type llama\.cpp has no matrix kernel for"),
    ("q8_1 matrix", tensor_type("blk.4.attn_q.weight", 9), r"tensor blk\.4\.attn_q\.weight is q8_1"),
    # reading (a check that predates the fuzzer): ggml-cpu ssm_conv asserts f32 weights
    ("f16 conv kernel", tensor_type("blk.0.ssm_conv1d.weight", 1), r"blk\.0\.ssm_conv1d\.weight is f16; llama\.cpp's ssm_conv kernel needs f32"),
    # fuzz: with the SPM tokenizer ("llama") tokenize() throws std::out_of_range (IndexError:
    # unordered_map::at, looking up byte tokens); RWKV asserts GGML_ASSERT(!ids.empty()) at load
    # when "\n" tokenizes to nothing, here it loads and generation fails on token -1
    ("SPM tokenizer", lambda g: g.set("tokenizer.ggml.model", T.STRING, b"llama"),
     r"tokenizer\.ggml\.model = 'llama'; Qwen3\.5/3\.6 models use .* 'gpt2'"),
    ("RWKV tokenizer", lambda g: g.set("tokenizer.ggml.model", T.STRING, b"rwkv"), r"tokenizer\.ggml\.model = 'rwkv'"),
    # fuzz (coherent): ggml.c GGML_ASSERT(ggml_can_mul_mat(k, q)): 3 KV heads for 2 query heads
    ("KV heads not dividing the heads", coherent(KV=3),
     r"head_count_kv = 3 with qwen35\.attention\.head_count = 2; expected a positive divisor"),
    # fuzz (coherent): ops.cpp GGML_ASSERT(n_dims <= ne0) with a head size below rope.dimension_count
    ("head size below RoPE dims", coherent(D=16), r"rope\.dimension_count = 32 but the head size .* is 16"),
    # defensive: refused by llama.cpp's tensor shapes here; with matching tensors the qwen35
    # graph asserts GGML_ASSERT(n_embd_head == hparams.n_embd_head_k())
    ("key and value head sizes differ", u32("qwen35.attention.value_length", 64),
     r"key_length = 128 and qwen35\.attention\.value_length = 64"),
    # reading: the graph takes layer 0's head count, the KV cache each layer's:
    # ggml.c GGML_ASSERT(a->ne[0] == b->ne[0]) at the first decode
    ("per-layer head counts",
     lambda g: g.set("qwen35.attention.head_count_kv", T.ARRAY, [1, 1, 1, 2, 1], T.UINT32),
     r"head_count_kv differs between layers"),
]


def template(text: str) -> Edit:
    return lambda g: g.set("tokenizer.chat_template", T.STRING, text.encode())


CASES += [
    # reading (after the fuzzer's chat stage found macro recursion): common/jinja's parser and
    # renderer recurse once per nesting level with no limit; a deep template overflows the
    # stack (SIGSEGV) when the model chats (5,000 brackets, 100,000 operators or 1,000 blocks)
    ("deeply nested template expression", template("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}"),
     r"tokenizer\.chat_template has a tag of 10001 tokens at byte 0"),
    ("template operator chain", template("{{ 1" + " + 1" * 100000 + " }}"),
     r"tokenizer\.chat_template has a tag of 200001 tokens"),
    ("deeply nested template blocks",
     template("{% if true %}" * 1000 + "x" + "{% endif %}" * 1000),
     r"tokenizer\.chat_template nests more than 100 blocks \(at byte 1300\)"),
]


def test_base_loads_and_generates_with_mtp(base: Path) -> None:
    with Model(base, n_ctx=256, n_threads=1) as m:
        out = m.generate("Once upon a time", SamplingParams(temperature=0, top_k=1, max_tokens=4),
                         speculator=Speculator.mtp(2))
        assert len(out.tokens) == 4


@pytest.mark.parametrize("name,edit,message", CASES, ids=[c[0] for c in CASES])
def test_abort_class_is_refused(base: Path, tmp_path: Path, name: str, edit: Edit,
                                message: str) -> None:
    path = edited(base, tmp_path, edit)
    with pytest.raises(ModelLoadError, match=message) as info:
        Model(path, n_ctx=256, n_threads=1)
    assert str(path) in str(info.value)
    assert "convert" in str(info.value)       # what to do about it


def test_invalid_utf8_in_metadata_is_shown_not_raised(base: Path, tmp_path: Path) -> None:
    """A string that is not UTF-8 (general.name here) does not stop the model: reading the
    metadata shows U+FFFD for the bad bytes instead of raising UnicodeDecodeError."""
    path = edited(base, tmp_path, lambda g: g.set("general.name", T.STRING, b"bad \xff\xfe name"))
    with Model(path, n_ctx=256, n_threads=1) as m:
        assert m.metadata["general.name"] == "bad \ufffd\ufffd name"
        assert m.has_mtp


def test_real_chat_templates_pass_the_depth_check(base: Path, tmp_path: Path) -> None:
    """Every template llama.cpp ships for its tests (models/templates, 71 real models' chat
    templates) stays within the nesting limits: the check refuses no real template."""
    templates = sorted((Path(__file__).resolve().parents[1] / "third_party" / "llama.cpp" / "models"
                        / "templates").glob("*.jinja"))
    if not templates:
        pytest.skip("third_party/llama.cpp/models/templates is not there")
    for source in templates:
        path = edited(base, tmp_path, template(source.read_text()))
        Model(path, vocab_only=True).close()
