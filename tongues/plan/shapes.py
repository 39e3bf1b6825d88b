"""Concrete Llama shapes for a parameter target: layers, width, heads, SwiGLU width, vocabulary.

`shape_for_params(target, vocab_size, seq_len)` searches the shapes that published model families
use and returns the one whose exact parameter count is closest to the target (within ±5% whenever
the vocabulary allows it) with a depth-to-width ratio near the usual one for that size.

Rules (and why):

- d_model is a multiple of 128 and head_dim is 64 (d_model <= 2048) or 128 (wider), as in GPT-3,
  Llama 2/3 and OLMo; tensor-core tiles and kernels (FlashAttention) like these sizes.
- The tiniest models (d_model < 512, the CPU demo's 0.2–3M-parameter models) relax this: d_model
  is a multiple of 64, head_dim is 32, the FFN width a multiple of 64 and also 2 or 2.5 × d_model
  when needed; at these sizes one layer is a large share of the model and the coarser grid could
  not land within 5% of a target, and nobody runs them on tensor cores.
- SwiGLU FFN width is 8/3·d_model rounded up to a multiple of 256 (Llama's rule); when that
  misses the target, 3, 3.5 or 4 × d_model are tried too (Llama 3 uses 3.5×, MobileLLM 4×).
- Depth to width: d_model / n_layers stays within 19–205, the span of published families, from
  MobileLLM-125M and SmolLM-135M (576/30 ≈ 19) through GPT-3, Llama 2 and OLMo (≈ 64–128) to
  Gopher-280B (16384/80 ≈ 205). The search prefers a ratio that grows with size, 32 at 10M
  parameters to 128 at about 100B (32·(N/1e7)^0.15, clipped to [32, 128]).
- Key/value heads: all heads (multi-head attention) below 1B parameters; grouped-query attention
  with 8 KV heads from 1B (Llama 3.2-1B and up), so there the head count is a multiple of 8.
- Embeddings are tied below 3.5B parameters (Llama 3.2-1B/3B, SmolLM, Gemma tie; Llama 3-8B does
  not): at small sizes an untied output matrix would be a large share of the parameters.

Counting: `param_count(include_embeddings=True)` is what `LlamaForCausalLM(shape.llama_config())`
instantiates (tests check it); the planner matches whichever count its law uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tongues.errors import TonguesError

ASPECT_MIN, ASPECT_MAX = 19.0, 205.0
TINY_D_MODEL = 512  # below this width the tiny-model rules apply
TIE_BELOW = 3.5e9
GQA_FROM = 1e9
FFN_MULTIPLIERS = (8 / 3, 3.0, 3.5, 4.0)
TINY_FFN_MULTIPLIERS = (8 / 3, 3.0, 3.5, 4.0, 2.0, 2.5)  # one layer is a big step at these sizes
BOS_ID, EOS_ID, PAD_ID = 2, 3, 0  # the tokenizer contract (tongues tokenizer train)


@dataclass(frozen=True)
class ModelShape:
    """A Llama decoder's hyperparameters (Hugging Face LlamaConfig terms in `llama_config`)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    tie_embeddings: bool
    max_seq_len: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer: attention, SwiGLU MLP, two RMSNorm weights."""
        q = self.n_heads * self.head_dim
        kv = self.n_kv_heads * self.head_dim
        return self.d_model * (q + 2 * kv) + q * self.d_model + 3 * self.d_model * self.ffn_dim + 2 * self.d_model

    @property
    def embedding_params(self) -> int:
        """Input embedding plus, when untied, the output (lm_head) matrix."""
        return self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)

    @property
    def matmul_params(self) -> int:
        """Weights of the matmuls a token passes through: attention, MLP, the output projection."""
        return self.n_layers * (self.layer_params - 2 * self.d_model) + self.vocab_size * self.d_model

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6 × matmul parameters + 12 · layers · seq_len · q_dim.

        The attention-score term is PaLM's (Chowdhery et al. 2022, App. B; nanoGPT uses it too),
        counted in full although causal masking skips half; the same count as the pretraining
        loop's MFU (tongues.plan.flops), so planned and measured MFU compare.
        """
        seq = self.max_seq_len if seq_len is None else seq_len
        return 6.0 * self.matmul_params + 12.0 * self.n_layers * seq * self.n_heads * self.head_dim

    def param_count(self, include_embeddings: bool = True) -> int:
        """Exact number of parameters; without embeddings, the input and output tables are left out."""
        body = self.n_layers * self.layer_params + self.d_model  # + final norm
        return body + (self.embedding_params if include_embeddings else 0)

    @property
    def aspect_ratio(self) -> float:
        return self.d_model / self.n_layers

    def llama_config(self) -> Any:
        """A `transformers.LlamaConfig` for this shape (token ids follow the tokenizer contract)."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=int(self.vocab_size),
            hidden_size=int(self.d_model),
            intermediate_size=int(self.ffn_dim),
            num_hidden_layers=int(self.n_layers),
            num_attention_heads=int(self.n_heads),
            num_key_value_heads=int(self.n_kv_heads),
            head_dim=int(self.head_dim),
            max_position_embeddings=int(self.max_seq_len),
            tie_word_embeddings=bool(self.tie_embeddings),
            rms_norm_eps=float(self.rms_norm_eps),
            rope_parameters={"rope_type": "default", "rope_theta": float(self.rope_theta)},
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            head_dim=self.head_dim,
            params=self.param_count(),
            non_embedding_params=self.param_count(include_embeddings=False),
            aspect_ratio=round(self.aspect_ratio, 2),
        )
        return out

    @classmethod
    def from_llama_config(cls, config: Any) -> ModelShape:
        """The shape of an existing LlamaConfig (e.g. one written by the planner)."""
        rope = getattr(config, "rope_parameters", None) or {}
        return cls(
            n_layers=config.num_hidden_layers, d_model=config.hidden_size, n_heads=config.num_attention_heads,
            n_kv_heads=config.num_key_value_heads or config.num_attention_heads, ffn_dim=config.intermediate_size,
            vocab_size=config.vocab_size, tie_embeddings=bool(config.tie_word_embeddings),
            max_seq_len=config.max_position_embeddings, rope_theta=float(rope.get("rope_theta", 10000.0)),
            rms_norm_eps=config.rms_norm_eps,
        )


def target_aspect_ratio(params: float) -> float:
    """The d_model / n_layers the search prefers for a model of `params` parameters."""
    return min(128.0, max(32.0, 32.0 * (params / 1e7) ** 0.15))


def _head_dim(d_model: int) -> int:
    if d_model < TINY_D_MODEL:
        return 32
    return 64 if d_model <= 2048 else 128


def _ffn(d_model: int, multiplier: float) -> int:
    step = 64 if d_model < TINY_D_MODEL else 256
    return step * math.ceil(multiplier * d_model / step - 1e-9)


def _kv_heads(n_heads: int, target: float) -> int | None:
    """All heads below GQA_FROM; else 8 KV heads, or None when n_heads is not a multiple of 8."""
    if target < GQA_FROM:
        return n_heads
    return 8 if n_heads % 8 == 0 else None


def _widths(max_width: int) -> list[int]:
    return [*range(64, TINY_D_MODEL, 64), *range(TINY_D_MODEL, max_width + 1, 128)]


def shape_for_params(
    target: float,
    vocab_size: int,
    seq_len: int,
    *,
    count: str = "total",
    tie_embeddings: bool | None = None,
    tolerance: float = 0.05,
    strict: bool = False,
) -> ModelShape:
    """The Llama shape closest to `target` parameters (`count`: "total" or "non_embedding").

    Among shapes within `tolerance` of the target, picks the one whose depth-to-width ratio is
    nearest the usual ratio for its size (`target_aspect_ratio`), preferring 8/3·d SwiGLU width.
    When no shape gets within `tolerance` (a vocabulary too large for the target), returns the
    closest one, or raises TonguesError if `strict`.
    """
    if not (isinstance(target, (int, float, np.floating, np.integer)) and target > 0 and math.isfinite(target)):
        raise TonguesError(f"parameter target must be a positive number, got {target!r}")
    if vocab_size < 1:
        raise TonguesError(f"vocabulary size must be positive, got {vocab_size}")
    if count not in ("total", "non_embedding"):
        raise TonguesError(f"count must be 'total' or 'non_embedding', got {count!r}")
    target = float(target)  # numpy scalars would leak np.bool_ into LlamaConfig, which rejects it
    tie = bool(target < TIE_BELOW if tie_embeddings is None else tie_embeddings)
    want_ratio = target_aspect_ratio(target)
    # Widest d_model worth trying: a single layer of that width already exceeds the target.
    max_width = max(TINY_D_MODEL, 128 * math.ceil(math.sqrt(target / 12.0) / 128) + 128)
    best: tuple[float, ModelShape] | None = None
    closest: tuple[float, ModelShape] | None = None
    for d_model in _widths(max_width):
        head_dim = _head_dim(d_model)
        n_heads = d_model // head_dim
        n_kv = _kv_heads(n_heads, target)
        if n_kv is None:
            continue
        multipliers = TINY_FFN_MULTIPLIERS if d_model < TINY_D_MODEL else FFN_MULTIPLIERS
        for m_index, multiplier in enumerate(multipliers):
            probe = ModelShape(1, d_model, n_heads, n_kv, _ffn(d_model, multiplier), vocab_size, tie, seq_len)
            fixed = probe.param_count(include_embeddings=(count == "total")) - probe.layer_params
            layers = (target - fixed) / probe.layer_params
            for n_layers in {max(1, math.floor(layers)), max(1, math.ceil(layers))}:
                shape = ModelShape(n_layers, d_model, n_heads, n_kv, probe.ffn_dim, vocab_size, tie, seq_len)
                got = shape.param_count(include_embeddings=(count == "total"))
                miss = abs(math.log(got / target))
                if not ASPECT_MIN <= shape.aspect_ratio <= ASPECT_MAX:
                    continue
                if closest is None or miss < closest[0]:
                    closest = (miss, shape)
                if miss > math.log1p(tolerance):
                    continue
                score = abs(math.log(shape.aspect_ratio / want_ratio)) + 0.15 * m_index + 2.0 * miss
                if best is None or score < best[0]:
                    best = (score, shape)
    if best is not None:
        return best[1]
    if closest is None:  # cannot happen for positive targets; keep the type checker honest
        raise TonguesError(f"no model shape found for {target:.3g} parameters")
    if strict:
        got = closest[1].param_count(include_embeddings=(count == "total"))
        raise TonguesError(
            f"no shape within {tolerance:.0%} of {target:.3g} {count.replace('_', '-')} parameters with a "
            f"{vocab_size}-token vocabulary (closest: {got:,}); use a smaller vocabulary or a larger budget"
        )
    return closest[1]
