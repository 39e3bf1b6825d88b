"""Accelerators the planner knows: peak dense bf16 tensor FLOP/s and memory, with their sources.

Peaks are the vendors' *dense* numbers (the datasheets often print the 2:4-sparsity figure, which
is twice as large; we halve it). Where a card has no bf16 tensor cores (V100, T4) the fp16 peak
is given and `bf16` is False. Model FLOPs utilisation (MFU) is measured against these peaks.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from tongues.errors import TonguesError

GIB = 1024**3


@dataclass(frozen=True)
class GPU:
    name: str
    peak_flops: float  # dense bf16 (fp16 where bf16 is False) tensor FLOP/s per device
    memory_gb: float  # device memory as sold, in GB (10^9 bytes)
    source: str
    bf16: bool = True

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    def to_dict(self) -> dict:
        return asdict(self)


_NV_A100 = "NVIDIA A100 Tensor Core GPU datasheet: BF16 312 TFLOPS dense (624 with sparsity)"
_NV_H100 = "NVIDIA H100 Tensor Core GPU datasheet: SXM BF16 1,979 TFLOPS with sparsity, 989.4 dense"

GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU("a100", 312e12, 80, _NV_A100 + "; 80 GB HBM2e"),
        GPU("a100-40gb", 312e12, 40, _NV_A100 + "; 40 GB HBM2"),
        GPU("h100", 989.4e12, 80, _NV_H100 + "; 80 GB HBM3"),
        GPU("h100-pcie", 756e12, 80, "NVIDIA H100 datasheet: PCIe BF16 1,513 TFLOPS with sparsity, 756 dense; 80 GB"),
        GPU("h100-nvl", 835e12, 94, "NVIDIA H100 datasheet: NVL BF16 1,671 TFLOPS with sparsity, 835 dense; 94 GB"),
        GPU("h200", 989.4e12, 141, "NVIDIA H200 Tensor Core GPU datasheet: SXM BF16 1,979 TFLOPS with sparsity; 141 GB HBM3e"),
        GPU("b200", 2.25e15, 180, "NVIDIA HGX B200 spec: FP16/BF16 36 PFLOPS with sparsity per 8 GPUs (2.25 PF dense each); 1.44 TB per 8 GPUs"),
        GPU("l40s", 362.05e12, 48, "NVIDIA L40S datasheet: BF16 733 TFLOPS with sparsity, 362.05 dense; 48 GB GDDR6"),
        GPU("l40", 181.05e12, 48, "NVIDIA L40 datasheet: BF16 362.1 TFLOPS with sparsity, 181.05 dense; 48 GB GDDR6"),
        GPU("l4", 121e12, 24, "NVIDIA L4 datasheet: BF16 242 TFLOPS with sparsity, 121 dense; 24 GB GDDR6"),
        GPU("a10", 125e12, 24, "NVIDIA A10 datasheet: BF16 250 TFLOPS with sparsity, 125 dense; 24 GB GDDR6"),
        GPU("a6000", 154.8e12, 48, "NVIDIA RTX A6000 datasheet: tensor 309.7 TFLOPS with sparsity, 154.8 dense; 48 GB"),
        GPU("rtx4090", 165.2e12, 24, "NVIDIA Ada Lovelace architecture whitepaper: RTX 4090 BF16 with FP32 accumulate 165.2 TFLOPS dense; 24 GB"),
        GPU("rtx3090", 71e12, 24, "NVIDIA Ampere GA102 whitepaper: RTX 3090 BF16 with FP32 accumulate 71 TFLOPS dense; 24 GB"),
        GPU("v100", 125e12, 32, "NVIDIA V100 datasheet: FP16 tensor 125 TFLOPS (no bf16); 32 GB HBM2", bf16=False),
        GPU("t4", 65e12, 16, "NVIDIA T4 datasheet: FP16 tensor 65 TFLOPS (no bf16); 16 GB GDDR6", bf16=False),
        GPU("mi300x", 1307.4e12, 192, "AMD Instinct MI300X datasheet: BF16 1,307.4 TFLOPS dense; 192 GB HBM3"),
        GPU("mi250x", 383e12, 128, "AMD Instinct MI250X datasheet: BF16 383 TFLOPS; 128 GB HBM2e"),
        GPU("tpu-v4", 275e12, 32, "Google Cloud TPU v4 documentation: 275 TFLOPS bf16 per chip; 32 GiB HBM"),
        GPU("tpu-v5e", 197e12, 16, "Google Cloud TPU v5e documentation: 197 TFLOPS bf16 per chip; 16 GB HBM"),
        GPU("tpu-v5p", 459e12, 95, "Google Cloud TPU v5p documentation: 459 TFLOPS bf16 per chip; 95 GB HBM"),
    )
}

_ALIASES = {
    "a100-80gb": "a100", "a100-sxm": "a100", "h100-sxm": "h100", "h100-80gb": "h100", "h200-sxm": "h200",
    "4090": "rtx4090", "rtx-4090": "rtx4090", "3090": "rtx3090", "rtx-3090": "rtx3090",
    "rtx-a6000": "a6000", "v100-32gb": "v100", "tpuv4": "tpu-v4", "tpuv5e": "tpu-v5e", "tpuv5p": "tpu-v5p",
}


def get_gpu(name: str) -> GPU:
    """The accelerator called `name` (case-insensitive, a few aliases); TonguesError if unknown."""
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in GPUS:
        raise TonguesError(f"unknown GPU {name!r} (known: {', '.join(GPUS)})")
    return GPUS[key]


def gpu_for_device_name(device_name: str) -> GPU | None:
    """The table's entry for a name as `torch.cuda.get_device_name` reports it ("NVIDIA H100 80GB
    HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA GeForce RTX 4090"), or None if none matches. A key
    matches when each of its dash-separated parts is a word of the name; the most specific wins."""
    words = set(re.split(r"[^a-z0-9]+", device_name.lower()))
    keys = [*GPUS, *_ALIASES]
    hits = [k for k in keys if set(k.split("-")) <= words]
    if not hits:
        return None
    best = max(hits, key=lambda k: (len(k.split("-")), len(k)))
    return GPUS[_ALIASES.get(best, best)]
