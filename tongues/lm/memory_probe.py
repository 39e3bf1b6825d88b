"""The measured side of the memory model: the peak bytes of one real training step on CPU.

`tongues.plan.memory` estimates memory from the shape alone (pure math); this module builds the
model and measures, so tests and benchmarks can hold the estimate to the measurement.
"""

from __future__ import annotations

from typing import Any

from tongues.lm.loss import install_chunked_loss
from tongues.lm.sharding import enable_activation_checkpointing
from tongues.plan.memory import check_loss, default_chunk, precision_bytes
from tongues.plan.shapes import ModelShape


def measure_step_peak(
    shape: ModelShape, micro_batch: int, seq_len: int, *, precision: str = "fp32", accumulation: int = 1,
    checkpointing: bool = False, seed: int = 0, loss: str = "logits", chunk: int | None = None,
) -> float:
    """Measured peak bytes of live tensors in one steady-state training step on CPU.

    Builds `LlamaForCausalLM(shape)`, runs one step (creating the AdamW states), then profiles a
    second step (`accumulation` micro-batches, backward each, fused AdamW, gradients set to None),
    as the pretraining loop does. PyTorch's CPU allocator reports every allocation and free to the
    profiler under `profile_memory=True`, each allocation with the running total allocated since
    profiling began; its maximum is the step's peak above what was live before, which is known
    exactly (parameters, AdamW states, the batch). This is the CPU analogue of
    `torch.cuda.max_memory_allocated` (tracemalloc does not see torch's allocator; process RSS
    counts allocator caches and the interpreter). `precision`: "fp32", "bf16-mixed" (CPU
    autocast) or "bf16" (bf16 weights). `loss`: "logits" (Hugging Face's own loss) or "chunked"
    (`tongues.lm.loss`, `chunk` tokens at a time, as `tongues pretrain` trains).
    """
    check_loss(loss)
    import contextlib

    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import LlamaForCausalLM

    precision_bytes(precision)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(shape.llama_config())
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    if checkpointing:
        enable_activation_checkpointing(model)
        model.config.use_cache = False
    model.train()
    if loss == "chunked":
        install_chunked_loss(model, chunk or default_chunk("cpu", shape.vocab_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    ids = torch.randint(0, shape.vocab_size, (accumulation, micro_batch, seq_len + 1))

    def cast() -> Any:
        return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else contextlib.nullcontext()

    def step() -> None:
        for micro in ids:
            with cast():  # the chunked loss takes shifted labels, Hugging Face's loss shifts them itself
                labels = micro[:, 1:] if loss == "chunked" else micro[:, :-1]
                value = model(input_ids=micro[:, :-1], labels=labels).loss
            value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    live = sum(p.nbytes for p in model.parameters()) + ids.nbytes
    live += sum(t.nbytes for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    peak = 0
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if type(node.extra_fields).__name__ == "_ExtraFields_Allocation":
            peak = max(peak, node.extra_fields.total_allocated)
        stack.extend(node.children)
    return float(live + peak)


__all__ = ["measure_step_peak"]
