"""Model FLOPs per token and accelerator peak FLOP/s, for model FLOPs utilization (MFU)."""

from __future__ import annotations

import time
from typing import Any


def flops_per_token(config: Any, seq_len: int) -> float:
    """Training FLOPs per token of a Llama config (forward + backward = 3x forward).

    6 x the weights of every matrix a token passes through (attention, MLP, the LM head; the
    input embedding is a lookup) plus the attention scores, 12 * layers * seq_len * q_dim, as in
    PaLM (App. B) and nanoGPT, so MFU figures compare with theirs.
    """
    h, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    q = config.num_attention_heads * head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * config.intermediate_size
    matmul_params = layers * per_layer + h * vocab
    return 6.0 * matmul_params + 12.0 * layers * seq_len * q


def measure_matmul_peak(dtype: Any = None, size: int = 1024, seconds: float = 0.5) -> float:
    """FLOP/s of a square matmul loop on the CPU (bf16 by default), at torch's current thread count."""
    import torch

    dtype = dtype or torch.bfloat16
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm up (oneDNN picks its kernel on first use)
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or runs < 2:
        torch.mm(a, b)
        runs += 1
    return 2.0 * size**3 * runs / elapsed


def cpu_peak_flops(dtype: Any = None, size: int = 512, seconds: float = 0.05, repeats: int = 5) -> float:
    """This CPU's peak for MFU: the best of `repeats` short single-thread matmul loops, times the
    threads torch trains with. One core measured at its best is not dragged down by other jobs on
    the machine (a loaded all-core measurement was seen too low, giving MFU above 100%)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        per_core = max(measure_matmul_peak(dtype, size=size, seconds=seconds) for _ in range(repeats))
    finally:
        torch.set_num_threads(threads)
    return per_core * threads


def mfu_text(mfu: float | None) -> str:
    """MFU for a progress bar: '-' when the peak is unknown, never above 100%."""
    return "-" if mfu is None else f"{min(mfu, 1.0):.0%}"


def fast_bf16() -> bool:
    """Whether bf16 matmuls run at least as fast as fp32 here: a CUDA GPU with bf16, or a CPU with
    native bf16 instructions (AVX512-BF16, AMX). Elsewhere (e.g. AVX2-only CPUs) PyTorch emulates
    bf16 matmuls, measured 45x slower than fp32 on this project's 2-core AMD EPYC."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def peak_flops(device: Any, dtype: Any = None, measure_cpu: bool = True) -> float | None:
    """Peak FLOP/s of one `device` in the training dtype: the datasheet's dense bf16 figure for
    known GPUs (`tongues.plan.hardware`), a short matmul measurement on CPU."""
    import torch

    if device.type == "cuda":
        from tongues.plan.hardware import gpu_for_device_name

        gpu = gpu_for_device_name(torch.cuda.get_device_name(device))
        return gpu.peak_flops if gpu else None
    if device.type == "cpu" and measure_cpu:
        return cpu_peak_flops(dtype)
    return None
