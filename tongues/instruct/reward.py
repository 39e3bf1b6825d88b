"""Reward model: TRL's RewardTrainer, a one-logit sequence-classification head on the base.

Trained on preference pairs (prompt, chosen, rejected) in TRL's conversational format; judged on
held-out pairs by pairwise accuracy, per failure kind (wrong language, code switch, ...).
"""

from __future__ import annotations

from typing import Any

from tongues.instruct.data import load_preferences, split_records
from tongues.instruct.training import context_length, count_params, peft_config, trl_config


def preference_dataset(pairs: list[Any]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
                               "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs])


def build_trainer(job: Any, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    train, held = split_records(load_preferences(job.data))
    set_seed(job.seed)  # the new head's initialization
    model = AutoModelForSequenceClassification.from_pretrained(job.base, num_labels=1, use_safetensors=True,
                                                               trust_remote_code=False)
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
    config = trl_config(RewardConfig, job.out, params=count_params(model), seed=job.seed, precision=job.precision,
                        defaults={"max_length": min(512, context_length(job.base)), "per_device_train_batch_size": 8, "num_train_epochs": 2,
                                  "learning_rate": 1e-3, "lr_scheduler_type": "cosine", "warmup_ratio": 0.05,
                                  "eval_strategy": "no"},
                        overrides=job.overrides)
    trainer = RewardTrainer(model=model, args=config, train_dataset=preference_dataset(train),
                            processing_class=tokenizer, peft_config=peft_config(job.lora, "SEQ_CLS"))
    return trainer, {"train_pairs": len(train), "heldout_pairs": len(held), "heldout": held}


__all__ = ["build_trainer", "preference_dataset"]
