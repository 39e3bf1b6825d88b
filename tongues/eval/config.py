"""Config of the `eval` stage (and the defaults of `tongues eval`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tongues.schema import StrictModel


class EvalConfig(StrictModel):
    """Tasks to evaluate a model on, and how.

    tasks: task names, family names ("kobest") or globs ("ko_*") from the task registry
    (tongues/eval/tasks); empty: the embedded tasks of the model's languages.
    limit: at most this many items per task (the first ones, in file order).
    num_fewshot: examples put before each item (drawn with `seed`, never the item itself).
    batch_size: sequences per forward pass, or "auto" (a token budget that fits the device).
    stride: rolling-window stride in tokens for bits per byte; None: the window itself, as
    lm-evaluation-harness does (disjoint windows); smaller: more context per token, slower.
    max_length: window in tokens; None: the model's context (max_position_embeddings).
    data_dir: where task files name their local data (else $TONGUES_EVAL_DATA, else the hub).
    split: evaluate this split instead of each task's own eval split (e.g. "validation").
    bootstrap: resamples for confidence intervals and the paired test.
    """

    tasks: list[str] = Field(default_factory=list)
    limit: int | None = Field(None, gt=0)
    num_fewshot: int = Field(0, ge=0)
    batch_size: int | Literal["auto"] = "auto"
    stride: int | None = Field(None, gt=0)
    max_length: int | None = Field(None, gt=1)
    data_dir: str | None = None
    split: str | None = None
    seed: int = 1234
    bootstrap: int = Field(1000, ge=100)
    device: str | None = None
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
