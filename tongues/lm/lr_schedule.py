"""Learning-rate schedules: linear warmup, then cosine or warmup-stable-decay (WSD).

A schedule is a pure function of the step, so resuming needs nothing but the step number.
"""

from __future__ import annotations

import math


def lr_at(
    step: int,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.1,
    decay_fraction: float = 0.2,
) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total_steps`.

    cosine: warmup, then cosine from `lr` down to `lr * min_lr_ratio` at the last step.
    wsd: warmup, constant `lr`, then a linear decay to `lr * min_lr_ratio` over the last
    `decay_fraction` of the steps (the stable phase lets a run be extended or branched).
    """
    floor = lr * min_lr_ratio
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        span = max(1, total_steps - 1 - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_steps = max(1, round(total_steps * decay_fraction))
        decay_start = max(warmup_steps, total_steps - decay_steps)
        if step < decay_start:
            return lr
        progress = min(1.0, (step - decay_start + 1) / max(1, total_steps - decay_start))
        return lr + (floor - lr) * progress
    raise ValueError(f"unknown schedule {schedule!r} (expected cosine or wsd)")
