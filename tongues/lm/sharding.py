"""FSDP2 for the pretraining loop: `fully_shard` on each Llama decoder layer, then on the root, over an
explicit one-dimensional device mesh — gloo on CPU processes, NCCL on GPUs, the same code.

accelerate 1.15 ignores an FSDP plugin on CPU (it silently trains DDP-style), so tongues applies
FSDP2 itself and gives accelerate only the optimizer. Parameters, gradients and AdamW states are
then sharded: each of W processes holds about 1/W of them (`local_parameter_count`), and checkpoints
are written by `torch.distributed.checkpoint` (tongues.lm.checkpoint), resumable at any world size.
"""

from __future__ import annotations

from typing import Any

import torch


def apply_fsdp(model: Any, world: int, device: torch.device, reshard_after_forward: bool, bf16: bool) -> Any:
    """Shard `model` in place across the `world` processes of the default process group."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (world,))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    for layer in body.layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    return model


def enable_activation_checkpointing(model: Any, **kwargs: Any) -> None:
    """Recompute each decoder layer's activations in backward (transformers 5 renamed the method;
    older releases have only gradient_checkpointing_enable)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs or None)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs or None)


def local_parameter_count(model: Any) -> int:
    """Parameter elements stored on this process (a DTensor counts its local shard only)."""
    from torch.distributed.tensor import DTensor

    total = 0
    for p in model.parameters():
        total += p.to_local().numel() if isinstance(p, DTensor) else p.numel()
    return total


def is_sharded(model: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


__all__ = ["apply_fsdp", "enable_activation_checkpointing", "is_sharded", "local_parameter_count"]
