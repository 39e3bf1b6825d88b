"""Recipe keys of the instruction stages: `models.<name>.instruct.{sft,reward,dpo,grpo}`.

Each stage that is present runs, in the order sft -> reward -> dpo -> grpo, after the model's
pretraining; a stage's base is the previous chat stage's model (sft's is the pretrained model),
the reward model judges win rates and is GRPO's `model:reward`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tongues.schema import StrictModel


class InstructStageConfig(StrictModel):
    """data: sources (embedded:LANG, files, hf:NAME); set: TRL config keys (e.g. num_train_epochs: 3);
    lora: {r, alpha, dropout} or null; rewards (grpo): "language_consistency,model:reward=0.5,length=0.2"
    (`model:reward` is the recipe's reward stage); eval_data: conversations whose held-out share
    judges the chat (default: the data's, else the embedded sets); max_eval: held-out prompts answered."""

    data: list[str] = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)
    lora: dict[str, float] | None = None
    rewards: str | None = None
    eval_data: list[str] = Field(default_factory=list)
    max_eval: int = Field(64, ge=1)
    max_new_tokens: int = Field(64, ge=1)  # answer length of the held-out chat judgement
    precision: Literal["auto", "bf16", "fp32"] = "auto"

    @field_validator("lora")
    @classmethod
    def _lora(cls, value: dict[str, float] | None) -> dict[str, Any] | None:
        from tongues.errors import ConfigError
        from tongues.instruct.training import parse_lora

        try:
            return parse_lora(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None


class InstructConfig(StrictModel):
    sft: InstructStageConfig | None = None
    reward: InstructStageConfig | None = None
    dpo: InstructStageConfig | None = None
    grpo: InstructStageConfig | None = None


__all__ = ["InstructConfig", "InstructStageConfig"]
