"""Model shapes of the synthetic presets: dense (``tiny``, ``bench``, ``qwen3.6-27b``, architecture
``qwen35``) and mixture-of-experts (``tiny-moe``, ``bench-moe``, ``qwen3.6-35b-a3b``, ``qwen35moe``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .tokenizer import FULL_VOCAB_SIZE

__all__ = ["Shape", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class Shape:
    """Dimensions of a ``qwen35`` / ``qwen35moe`` model (names follow the HF config of
    Qwen3.5/3.6).

    ``n_expert > 0`` makes it a mixture-of-experts model (``qwen35moe``): every FFN, the MTP
    block's included, is ``n_expert`` routed experts of width ``n_ff_exp`` of which the router
    picks ``n_expert_used`` per token, plus one always-on shared expert of width ``n_ff_shexp``
    gated by a sigmoid; ``n_ff`` is then unused (0). Every matrix dimension of the presets is a
    multiple of 256, so that every k-quant (Q2_K ... Q6_K) applies to every matrix, as in the
    real models.
    """

    name: str
    n_embd: int                 # hidden_size
    n_ff: int                   # intermediate_size
    n_layer: int                # num_hidden_layers (trunk, without the MTP block)
    n_head: int                 # num_attention_heads
    n_head_kv: int              # num_key_value_heads
    head_dim: int               # head_dim (key_length == value_length)
    linear_n_k_heads: int       # linear_num_key_heads   (ssm.group_count)
    linear_n_v_heads: int       # linear_num_value_heads (ssm.time_step_rank)
    linear_head_dim: int        # linear_key_head_dim == linear_value_head_dim (ssm.state_size)
    conv_kernel: int = 4        # linear_conv_kernel_dim
    full_attention_interval: int = 4
    partial_rotary_factor: float = 0.25
    rope_theta: float = 10_000_000.0
    rms_norm_eps: float = 1e-6
    context_length: int = 262_144
    vocab_size: int = FULL_VOCAB_SIZE
    n_mtp: int = 1              # mtp_num_hidden_layers (0: no MTP head)
    size_label: str = ""
    residual_scale: float = 0.1
    """Total RMS of all layer outputs relative to the token embedding (the behaviour margin)."""
    n_expert: int = 0           # num_experts (0: dense FFN, architecture qwen35)
    n_expert_used: int = 0      # num_experts_per_tok
    n_ff_exp: int = 0           # moe_intermediate_size
    n_ff_shexp: int = 0         # shared_expert_intermediate_size

    @property
    def is_moe(self) -> bool:
        """A mixture-of-experts model (``qwen35moe``)."""
        return self.n_expert > 0

    @property
    def arch(self) -> str:
        """``general.architecture``: ``"qwen35moe"`` with experts, else ``"qwen35"``."""
        return "qwen35moe" if self.is_moe else "qwen35"

    @property
    def n_rot(self) -> int:
        """``rope.dimension_count``."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def rope_sections(self) -> list[int]:
        """IMRoPE sections, ``[11, 11, 10, 0]`` scaled to ``n_rot / 2`` as in Qwen3.5/3.6."""
        half = self.n_rot // 2
        a = round(half * 11 / 32)
        b = round(half * 11 / 32)
        return [a, b, half - a - b, 0]

    @property
    def ssm_inner(self) -> int:
        """``ssm.inner_size`` (value heads x head dim)."""
        return self.linear_n_v_heads * self.linear_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the DeltaNet causal convolution (q, k and v)."""
        return 2 * self.linear_n_k_heads * self.linear_head_dim + self.ssm_inner

    def is_recurrent(self, il: int) -> bool:
        """Layer ``il`` is a Gated DeltaNet layer (else full attention; MTP blocks are not)."""
        return il < self.n_layer and (il + 1) % self.full_attention_interval != 0

    @property
    def block_count(self) -> int:
        """``block_count``: trunk plus MTP blocks."""
        return self.n_layer + self.n_mtp

    def with_(self, **changes: object) -> Shape:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def validate(self) -> None:
        """Raise ``ValueError`` for shapes llama.cpp cannot run."""
        if self.linear_n_v_heads % self.linear_n_k_heads:
            raise ValueError("linear_n_v_heads must be a multiple of linear_n_k_heads")
        if self.n_head % self.n_head_kv:
            raise ValueError("n_head must be a multiple of n_head_kv")
        if self.n_rot % 2 or not 0 < self.n_rot <= self.head_dim:
            raise ValueError("head_dim * partial_rotary_factor must be even and in (0, head_dim]")
        if self.n_mtp not in (0, 1):
            raise ValueError("llama.cpp supports exactly one MTP block (or none)")
        if self.n_layer < 1 or self.full_attention_interval < 1:
            raise ValueError("n_layer and full_attention_interval must be >= 1")
        if self.is_moe:
            if not 1 <= self.n_expert_used <= self.n_expert:
                raise ValueError("n_expert_used must be in [1, n_expert]")
            if self.n_ff_exp < 1 or self.n_ff_shexp < 1:
                raise ValueError("a qwen35moe model needs n_ff_exp and n_ff_shexp >= 1 (llama.cpp "
                                 "requires the shared expert)")
            if self.n_ff:
                raise ValueError("a qwen35moe model has no dense FFN: set n_ff=0")
        elif self.n_ff < 1 or self.n_expert_used or self.n_ff_exp or self.n_ff_shexp:
            raise ValueError("a dense model needs n_ff >= 1 and no expert dimensions")


PRESETS: dict[str, Shape] = {
    # Tests: the real tokenizer (248,320 tokens), 4 layers (3 DeltaNet + 1 attention) + MTP.
    "tiny": Shape(
        name="tiny", n_embd=256, n_ff=512, n_layer=4, n_head=2, n_head_kv=1, head_dim=128,
        linear_n_k_heads=2, linear_n_v_heads=4, linear_head_dim=64,
        context_length=32_768, size_label="0.1B"),
    # CPU benchmark: real proportions (output layer ~4 % of weights, like the 27B) with a
    # truncated 32,768-token vocabulary; ~1 GB at Q4_K_M, so decode is bound by memory traffic.
    "bench": Shape(
        name="bench", n_embd=2048, n_ff=6912, n_layer=24, n_head=16, n_head_kv=2, head_dim=128,
        linear_n_k_heads=8, linear_n_v_heads=16, linear_head_dim=128,
        context_length=65_536, vocab_size=32_768, size_label="1.6B"),
    # The real dimensions of Qwen3.6-27B (64 layers + 1 MTP block).
    "qwen3.6-27b": Shape(
        name="qwen3.6-27b", n_embd=5120, n_ff=17408, n_layer=64, n_head=24, n_head_kv=4,
        head_dim=256, linear_n_k_heads=16, linear_n_v_heads=48, linear_head_dim=128,
        context_length=262_144, size_label="27B"),
    # Tests, mixture of experts: tiny's layout with 16 routed experts (4 per token) and the
    # shared expert in every FFN, the MTP block's included.
    "tiny-moe": Shape(
        name="tiny-moe", n_embd=256, n_ff=0, n_layer=4, n_head=2, n_head_kv=1, head_dim=128,
        linear_n_k_heads=2, linear_n_v_heads=4, linear_head_dim=64,
        n_expert=16, n_expert_used=4, n_ff_exp=256, n_ff_shexp=256,
        context_length=32_768, size_label="0.1B-A0.1B"),
    # CPU benchmark, mixture of experts: Qwen3.6-35B-A3B halved in width (hidden 1024, every
    # head count halved, expert width hidden/4, the same 256 experts, 8 per token), 24 layers,
    # and a vocabulary sized so that the proportions of the weights one token reads match the
    # real model's (output layer ~17 %, routed experts ~34 %, attention/DeltaNet ~44 %, shared
    # expert ~4 %; total/active ~12x): see README "Mixture of experts".
    "bench-moe": Shape(
        name="bench-moe", n_embd=1024, n_ff=0, n_layer=24, n_head=8, n_head_kv=1, head_dim=256,
        linear_n_k_heads=8, linear_n_v_heads=16, linear_head_dim=128,
        n_expert=256, n_expert_used=8, n_ff_exp=256, n_ff_shexp=256,
        context_length=65_536, vocab_size=73_728, size_label="5.3B-A0.4B"),
    # The real dimensions of Qwen3.6-35B-A3B (= Qwen3.5-35B-A3B's text model): 40 layers + 1
    # MTP block, 256 experts of width 512, 8 per token, a shared expert of width 512.
    "qwen3.6-35b-a3b": Shape(
        name="qwen3.6-35b-a3b", n_embd=2048, n_ff=0, n_layer=40, n_head=16, n_head_kv=2,
        head_dim=256, linear_n_k_heads=16, linear_n_v_heads=32, linear_head_dim=128,
        n_expert=256, n_expert_used=8, n_ff_exp=512, n_ff_shexp=512,
        context_length=262_144, size_label="35B-A3B"),
}


def get_preset(name: str) -> Shape:
    """The shape of preset ``name``; ``ValueError`` lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
