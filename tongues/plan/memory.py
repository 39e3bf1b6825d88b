"""Training memory per device: weights, gradients, AdamW states, activations, the loss's logits.

The activation terms count, tensor by tensor, what autograd saves for the backward pass of the
Hugging Face `LlamaForCausalLM` (transformers 5, SDPA/flash attention, so no seq_len² term), per
token (bytes), for three precisions:

- ``fp32``: everything in float32 (the CPU demo).
- ``bf16-mixed``: float32 weights under bf16 autocast (accelerate's ``mixed_precision="bf16"``).
  The residual stream and RMSNorm stay float32; every matmul input is cast to bf16 and saved
  (the q/k/v projections each cast the normed input: three copies); autocast also keeps a bf16
  copy of every matmul weight until backward.
- ``bf16``: weights, gradients and AdamW states in bf16; RMSNorm still computes in float32.

Per layer, with d = d_model, q = heads·head_dim, kv = kv_heads·head_dim, f = FFN width, h = heads:

    fp32        4·(6d + 2q + 2kv + 4f + h + 2)
    bf16-mixed  26d + 4q + 4kv + 8f + 4h + 8
    bf16        16d + 4q + 4kv + 8f + 4h + 8

plus the final norm and the loss: HF upcasts logits to float32 and log-softmax saves its float32
output (4·vocab bytes per token); its backward briefly holds two more float32 logit-sized tensors
(8·vocab bytes per token), which is where the peak sits for small models with large vocabularies.
With `loss="chunked"` (`tongues.lm.loss`, what `tongues pretrain` trains with) no logits are kept:
the saved bytes lose the 4·vocab term and gain the head weight's float32 gradient (4·vocab·d,
once), and the transient is one chunk's logits instead of all of them (`_chunked_head`).
These formulas were read off `torch.autograd.graph.saved_tensors_hooks` on the real model, and the
whole estimate is checked against a measured CPU peak in tests/test_plan_memory.py.

Peak = weights + AdamW states + [gradients, live while micro-batches accumulate]
       + activations + logit transients   (the start of backward), or
       weights + AdamW states + gradients (the end of backward), whichever is larger.
(See `tongues.lm.memory_probe.measure_step_peak` for how the estimate is checked.)
AdamW is assumed fused (no per-step temporaries), as on GPU. With activation checkpointing only
each layer's input is kept; backward first holds the logit transients, and last rebuilds the first
layer's activations while (nearly) all gradients exist; the larger of the two sets the peak.
DDP adds its gradient buckets (a second gradient copy, `gradient_as_bucket_view=False`, the
default). FSDP (full shard) divides weights, gradients and AdamW states by the GPU count and adds
the all-gathered bf16 parameters of two decoder layers (current and prefetched) plus the
embedding, and one layer's full-precision gradients before reduce-scatter; these FSDP buffer terms
are an estimate, not a measurement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tongues.errors import TonguesError
from tongues.plan.shapes import ModelShape

PRECISIONS = ("bf16-mixed", "bf16", "fp32")
STRATEGIES = ("ddp", "fsdp")
LOSSES = ("logits", "chunked")
GIB = 1024**3
_INDEX_BYTES = 16  # input ids and labels, int64


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device for one training step; `peak` is what must fit."""

    strategy: str
    gpus: int
    micro_batch: int
    seq_len: int
    precision: str
    checkpointing: bool
    weights: float
    gradients: float
    optimizer: float
    buffers: float  # DDP buckets or FSDP all-gather / reduce-scatter buffers
    activations: float  # everything autograd keeps for backward (incl. autocast weight copies)
    logits: float  # the loss's transients: float32 logit gradients (logits) or one chunk's (chunked)
    peak: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("weights", "gradients", "optimizer", "buffers", "activations", "logits", "peak"):
            out[f"{key}_gib"] = round(out.pop(key) / GIB, 4)
        return out


def precision_bytes(precision: str) -> tuple[int, int, int]:
    """(weight, gradient, AdamW-state) bytes per parameter."""
    if precision not in PRECISIONS:
        raise TonguesError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    return (2, 2, 4) if precision == "bf16" else (4, 4, 8)


def layer_activation_bytes(shape: ModelShape, precision: str) -> int:
    """Bytes autograd saves per token in one decoder layer (see the module docstring)."""
    precision_bytes(precision)
    d, f, h = shape.d_model, shape.ffn_dim, shape.n_heads
    q = shape.n_heads * shape.head_dim
    kv = shape.n_kv_heads * shape.head_dim
    if precision == "fp32":
        return 4 * (6 * d + 2 * q + 2 * kv + 4 * f + h + 2)
    norms = 26 * d if precision == "bf16-mixed" else 16 * d
    return norms + 4 * q + 4 * kv + 8 * f + 4 * h + 8


def check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise TonguesError(f"unknown loss {loss!r} (known: {', '.join(LOSSES)})")


def head_activation_bytes(shape: ModelShape, precision: str) -> int:
    """Bytes saved per token after the last layer: final RMSNorm, lm_head input, log-softmax output."""
    d, v = shape.d_model, shape.vocab_size
    if precision == "fp32":
        return 4 * (3 * d + v + 1) + _INDEX_BYTES
    norm = 10 * d if precision == "bf16-mixed" else 8 * d
    return norm + 4 * v + 4 + _INDEX_BYTES


def _chunked_head(shape: ModelShape, tokens: int, precision: str, chunk: int | None) -> tuple[float, float]:
    """(saved head bytes per token, transient bytes) of the chunked loss (`tongues.lm.loss`).

    It saves no logits: per token only the gradient of the head's input, in the compute dtype, in
    place of the input the head's matmul would save (same size), so the saved bytes are the
    logits path's minus its float32 log-softmax output; plus the head weight's float32 gradient
    (V·d·4, counted once, spread over the tokens here). Transient, at the end of forward: the final
    norm's float32 output, its compute-dtype copy, the compute-dtype weight, one chunk's float32
    logits with log-sum-exp's float32 temporary (their compute-dtype gradient is smaller than the
    temporary and comes after it), plus the chunk's V·d weight-gradient term.
    """
    d, v = shape.d_model, shape.vocab_size
    c = min(tokens, chunk or default_chunk("cuda", v))
    low = precision != "fp32"  # matmuls in bf16: copies of the input and the weight exist
    grad_w = 4.0 * v * d
    saved = head_activation_bytes(shape, precision) - 4 * v + grad_w / tokens
    transient = tokens * d * (4 + (2 if precision == "bf16-mixed" else 0))
    transient += (2 * v * d if precision == "bf16-mixed" else 0) + 8 * c * v  # logits + log-sum-exp's temporary
    transient += v * d * (4 + (2 if low else 0))
    return saved, transient


def default_chunk(device: Any, vocab_size: int) -> int:
    """Tokens per chunk of the chunked loss (`tongues.lm.loss`): about 8 MB of fp32 logits on a CPU
    (cache-sized, measured fastest in benchmarks/pretrain.py), about 256 MB on a GPU (large matmuls,
    few launches); a multiple of 64. `device`: a torch.device or its type ("cpu", "cuda")."""
    budget = 2**26 if getattr(device, "type", device) == "cuda" else 2**21
    return max(64, budget // max(1, vocab_size) // 64 * 64)


def _layer_input_bytes(shape: ModelShape, precision: str) -> int:
    # The residual stream is float32 unless the weights themselves are bf16.
    return shape.d_model * (2 if precision == "bf16" else 4)


def estimate_memory(
    shape: ModelShape,
    micro_batch: int,
    seq_len: int,
    *,
    precision: str = "bf16-mixed",
    strategy: str = "ddp",
    gpus: int = 1,
    checkpointing: bool = False,
    grads_live: bool = True,
    loss: str = "logits",
    chunk: int | None = None,
) -> MemoryEstimate:
    """Per-device memory of a training step of `shape` on `micro_batch` sequences of `seq_len`.

    `grads_live`: gradients already exist during forward (gradient accumulation, or any step
    after the first when they are zeroed rather than freed); False for a single micro-batch
    with ``zero_grad(set_to_none=True)``. `loss`: "logits" (Hugging Face's loss over materialized
    logits) or "chunked" (`tongues.lm.loss`, `chunk` tokens at a time; the default chunk of a GPU
    when `gpus` > 0 is what `tongues pretrain` uses).
    """
    check_loss(loss)
    if strategy not in STRATEGIES:
        raise TonguesError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if micro_batch < 1 or seq_len < 1 or gpus < 1:
        raise TonguesError("micro-batch, sequence length and GPU count must be positive")
    w_b, g_b, o_b = precision_bytes(precision)
    params = shape.param_count()
    tokens = micro_batch * seq_len
    weights, gradients, optimizer = params * w_b, params * g_b, params * o_b
    layer = layer_activation_bytes(shape, precision)
    head = head_activation_bytes(shape, precision)
    # autocast keeps bf16 copies of the matmul weights it used until their backward ran
    weight_cache = 2 * shape.matmul_params if precision == "bf16-mixed" else 0
    if strategy == "fsdp":
        compute_b = 4 if precision == "fp32" else 2
        weights, gradients, optimizer = weights / gpus, gradients / gpus, optimizer / gpus
        buffers = (2 * shape.layer_params + shape.vocab_size * shape.d_model) * compute_b + shape.layer_params * g_b
        weight_cache = 0  # FSDP gathers parameters already in the compute dtype
    else:
        buffers = params * g_b if gpus > 1 else 0.0
    logits = 8.0 * shape.vocab_size * tokens
    if loss == "chunked":
        head, logits = _chunked_head(shape, tokens, precision, chunk)
        weight_cache -= 2 * shape.vocab_size * shape.d_model if weight_cache else 0  # cast by the loss itself
    live = gradients if grads_live else 0.0
    if checkpointing:
        # Kept: each layer's input, the head's activations (and its weight copy under autocast).
        # Backward first runs the loss (logit transients). It rebuilds the first layer last: by
        # then the head's and the other layers' saved tensors are freed and (nearly) all
        # gradients exist (counted whole), plus the gradients flowing through the layer (d + f).
        share = weight_cache / max(shape.matmul_params, 1)
        activations = tokens * (shape.n_layers * _layer_input_bytes(shape, precision) + head)
        activations += share * shape.vocab_size * shape.d_model
        rebuilt = tokens * (_layer_input_bytes(shape, precision) + layer + 4 * (shape.d_model + shape.ffn_dim))
        rebuilt += share * shape.layer_params
        during_backward = max(activations + logits + live, rebuilt + gradients)
    else:
        activations = tokens * (shape.n_layers * layer + head) + weight_cache
        # Backward frees activations layer by layer while gradients appear: the sum is largest at
        # its start (all activations, the logit transients) or its end (all gradients).
        during_backward = max(activations + logits + live, gradients)
    peak = weights + optimizer + buffers + during_backward
    return MemoryEstimate(
        strategy, gpus, micro_batch, seq_len, precision, checkpointing,
        weights, gradients, optimizer, buffers, activations, logits, peak,
    )


def max_micro_batch(
    shape: ModelShape,
    seq_len: int,
    memory_bytes: float,
    *,
    usable: float = 0.9,
    limit: int = 4096,
    **kwargs: Any,
) -> int:
    """Largest micro-batch whose peak fits in `usable` × `memory_bytes` (0 if not even one fits).

    The 10% margin covers the CUDA context, allocator fragmentation and kernel workspaces.
    """
    budget = usable * memory_bytes

    def fits(batch: int) -> bool:
        return estimate_memory(shape, batch, seq_len, **kwargs).peak <= budget

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:  # invariant: fits(lo), not fits(hi) (or hi past the limit)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
