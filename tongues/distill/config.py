"""Recipe keys of the distillation stages: `students.<name>` -> stage `distill-<name>`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tongues.schema import StrictModel


class StudentConfig(StrictModel):
    """teacher: a recipe model name (its last stage's model is the teacher), a directory, a hub name
    or a .gguf file; exactly one of params (a planner shape with the teacher's tokenizer, or
    `tokenizer`), layers (the teacher with that many layers kept) or dir (an existing model); data:
    for logits the teacher model's own tokenized corpora unless given; set: pretraining keys
    (logits) or TRL keys."""

    teacher: str
    method: Literal["logits", "sequence", "on-policy", "gkd", "gold"] = "logits"
    params: float | None = Field(None, gt=0)
    layers: int | None = Field(None, ge=1)
    dir: str | None = None
    tokenizer: str | None = None
    data: list[str] = Field(default_factory=list)
    objective: str = "fkl"
    temperature: float = Field(1.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    top_k: int = Field(32, ge=1)
    set: dict[str, Any] = Field(default_factory=dict)
    scratch: bool = True

    @model_validator(mode="after")
    def _one_student(self) -> StudentConfig:
        given = [k for k in ("params", "layers", "dir") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of params, layers or dir (got {', '.join(given) or 'none'})")
        return self





class EncoderStageConfig(StrictModel):
    """teacher: a CLIP / SD / SDXL directory or hub name, or "tiny" (a random 32-wide CLIP teacher and a
    matching tiny Stable Diffusion pipeline built in the stage directory: the plumbing, offline);
    student: a recipe model name (its pretrained model) or a model directory; parallel: TSV files
    (default: the embedded English<TAB>xx captions of the student's language); image_prompt: one
    picture rendered from it through the pipeline (`pipeline`, or the tiny one)."""

    teacher: str
    student: str
    parallel: list[str] = Field(default_factory=list)
    steps: int = Field(300, ge=1)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(1e-3, gt=0)
    trunk_lr: float = Field(2e-4, ge=0)
    pipeline: str | None = None
    image_prompt: str | None = None
    image_steps: int = Field(2, ge=1)
    image_size: int | None = Field(None, ge=8)
__all__ = ["EncoderStageConfig", "StudentConfig"]
