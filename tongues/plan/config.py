"""Config of the plan stage: the compute budget and the scaling law."""

from __future__ import annotations

from pydantic import Field, model_validator

from tongues.errors import TonguesError
from tongues.plan.hardware import get_gpu
from tongues.schema import StrictModel


class PlanConfig(StrictModel):
    """Compute budget for the planner: exactly one of `flops`, `params`, or `gpus`+`gpu`+`hours`.

    `gpus`+`gpu` without `hours` only describe the hardware for the cost and memory estimates.
    `unique_tokens` overrides the corpus size the runner measures (tokens of the model's tokenizer).
    `law`: chinchilla | chinchilla-approach1 | chinchilla-approach2 | epoch2024 | muennighoff2023 |
    fitted:PATH (a law written by `tongues scaling fit`).
    """

    flops: float | None = Field(None, gt=0)
    params: float | None = Field(None, gt=0)
    gpus: int | None = Field(None, gt=0)
    gpu: str | None = None
    hours: float | None = Field(None, gt=0)
    mfu: float = Field(0.4, gt=0, le=1)
    law: str = "chinchilla"
    unique_tokens: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_budget(self) -> PlanConfig:
        given = [k for k in ("flops", "params", "hours") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one budget: flops, params, or gpus+gpu+hours (got {', '.join(given) or 'none'})"
            )
        if self.hours is not None and (self.gpus is None or self.gpu is None):
            raise ValueError("hours needs gpus and gpu (e.g. gpus: 8, gpu: h100)")
        if self.gpus is not None and self.gpu is None:
            raise ValueError("gpus needs gpu (e.g. gpu: h100)")
        if self.gpu is not None:
            try:
                get_gpu(self.gpu)
            except TonguesError as err:
                raise ValueError(str(err)) from None
        if not (self.law in _LAW_NAMES or (self.law.startswith("fitted:") and len(self.law) > len("fitted:"))):
            raise ValueError(f"unknown law {self.law!r} (known: {', '.join(_LAW_NAMES)}, or fitted:PATH)")
        return self


_LAW_NAMES = ("chinchilla", "chinchilla-approach1", "chinchilla-approach2", "epoch2024", "muennighoff2023")


__all__ = ["PlanConfig"]
