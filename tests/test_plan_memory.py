"""The memory estimate against a measured peak of a real training step on CPU.

The measurement (`tongues.lm.memory_probe.measure_step_peak`) reads the peak of live tensor bytes from
the events PyTorch's CPU allocator reports to the profiler (the CPU analogue of
`torch.cuda.max_memory_allocated`; its docstring says why not tracemalloc or RSS); the estimate is
pure arithmetic from the shape (`estimate_memory`).
"""

from __future__ import annotations

import pytest

from tongues.errors import TonguesError
from tongues.lm.memory_probe import measure_step_peak
from tongues.plan.memory import estimate_memory, max_micro_batch
from tongues.plan.shapes import ModelShape


@pytest.mark.parametrize(
    ("shape", "batch", "seq_len", "accumulation", "precision", "checkpointing", "loss", "chunk"),
    [
        (ModelShape(2, 128, 4, 4, 384, 2000, True, 128), 4, 64, 1, "fp32", False, "logits", None),  # logits-heavy
        (ModelShape(2, 128, 4, 2, 512, 300, False, 64), 2, 64, 2, "fp32", False, "logits", None),  # GQA, untied
        (ModelShape(2, 128, 4, 4, 384, 1000, True, 64), 2, 64, 1, "bf16-mixed", False, "logits", None),  # autocast
        (ModelShape(2, 128, 4, 4, 512, 256, True, 128), 2, 128, 1, "fp32", True, "logits", None),  # checkpointing
        # the chunked loss of `tongues pretrain`: small and large chunks, so the chunk term is checked
        (ModelShape(2, 128, 4, 4, 384, 4000, True, 128), 4, 128, 1, "bf16-mixed", False, "chunked", 128),
        (ModelShape(2, 128, 4, 4, 384, 4000, False, 128), 4, 128, 2, "fp32", False, "chunked", 512),
        (ModelShape(2, 128, 4, 4, 384, 4000, True, 128), 4, 128, 1, "bf16-mixed", True, "chunked", 512),
    ],
    ids=["fp32", "fp32-accumulate-gqa", "bf16-autocast", "checkpointing",
         "chunked-bf16-autocast", "chunked-fp32-accumulate-untied", "chunked-checkpointing"],
)
def test_estimate_within_15_percent_of_measured_peak(shape, batch, seq_len, accumulation, precision, checkpointing,
                                                     loss, chunk):
    measured = measure_step_peak(shape, batch, seq_len, precision=precision, accumulation=accumulation,
                                 checkpointing=checkpointing, loss=loss, chunk=chunk)
    estimate = estimate_memory(shape, batch, seq_len, precision=precision, grads_live=accumulation > 1,
                               checkpointing=checkpointing, loss=loss, chunk=chunk)
    assert estimate.peak == pytest.approx(measured, rel=0.15)


def test_chunked_loss_keeps_no_logits():
    """With a vocabulary much larger than the model, the logits dominate; the chunked loss's peak
    sits well below the logits path's, measured and estimated, and grows with the chunk."""
    shape = ModelShape(2, 128, 4, 4, 384, 4000, True, 128)
    logits = measure_step_peak(shape, 4, 128, loss="logits")
    chunked = measure_step_peak(shape, 4, 128, loss="chunked", chunk=128)
    assert chunked < 0.8 * logits
    small = estimate_memory(shape, 4, 128, loss="chunked", chunk=128)
    large = estimate_memory(shape, 4, 128, loss="chunked", chunk=512)
    assert small.peak < large.peak < estimate_memory(shape, 4, 128, loss="logits").peak
    with pytest.raises(TonguesError, match="unknown loss 'fused'"):
        estimate_memory(shape, 4, 128, loss="fused")


def test_breakdown_and_largest_micro_batch():
    shape = ModelShape(24, 2048, 32, 8, 5632, 32000, True, 2048)
    one = estimate_memory(shape, 1, 2048, gpus=8)
    assert one.weights == 4 * shape.param_count() and one.optimizer == 8 * shape.param_count()
    assert one.buffers == one.gradients  # DDP's bucket copy of the gradients
    fsdp = estimate_memory(shape, 1, 2048, gpus=8, strategy="fsdp")
    assert fsdp.optimizer == one.optimizer / 8 and fsdp.peak < one.peak
    assert estimate_memory(shape, 4, 2048, checkpointing=True).peak < estimate_memory(shape, 4, 2048).peak
    budget = 80e9
    best = max_micro_batch(shape, 2048, budget)
    assert best >= 1
    assert estimate_memory(shape, best, 2048).peak <= 0.9 * budget < estimate_memory(shape, best + 1, 2048).peak
    assert max_micro_batch(shape, 2048, 1e9) == 0
