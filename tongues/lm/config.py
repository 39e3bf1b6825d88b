"""Configs of the model stages: plan (scaling laws), pretrain."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tongues.schema import StrictModel


class PlanConfig(StrictModel):
    """Compute budget for the planner: exactly one of `flops`, `params`, or `gpus`+`gpu`+`hours`."""

    flops: float | None = Field(None, gt=0)
    params: float | None = Field(None, gt=0)
    gpus: int | None = Field(None, gt=0)
    gpu: str | None = None
    hours: float | None = Field(None, gt=0)
    mfu: float = Field(0.4, gt=0, le=1)
    law: str = "chinchilla"


class PretrainConfig(StrictModel):
    """The pretraining loop's knobs; anything left out is derived from the plan."""

    seq_len: int = Field(256, ge=8)
    global_batch_tokens: int = Field(8192, gt=0)
    micro_batch_size: int = Field(8, gt=0)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    schedule: Literal["cosine", "wsd"] = "cosine"
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False
    eval_every: int = Field(50, gt=0)
    checkpoint_every: int = Field(100, gt=0)
    keep_checkpoints: int = Field(2, ge=1)
