"""Config of the `eval` stage."""

from __future__ import annotations

from pydantic import Field

from tongues.schema import StrictModel


class EvalConfig(StrictModel):
    """Tasks (names from the task registry) to evaluate a model on."""

    tasks: list[str] = Field(default_factory=list)
    limit: int | None = Field(None, gt=0)
    num_fewshot: int = Field(0, ge=0)
