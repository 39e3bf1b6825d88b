"""DPO: TRL's DPOTrainer on preference pairs; the reference model is the base (the SFT model).

Judged on held-out pairs by the implicit reward (beta * log-ratio to the reference) accuracy and
margin, as TRL computes them in evaluation.
"""

from __future__ import annotations

from typing import Any

from tongues.instruct.data import load_preferences, split_records
from tongues.instruct.reward import preference_dataset
from tongues.instruct.training import context_length, count_params, peft_config, trl_config


def build_trainer(job: Any, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    train, held = split_records(load_preferences(job.data))
    model = AutoModelForCausalLM.from_pretrained(job.base, use_safetensors=True, trust_remote_code=False)
    reference = None
    if job.lora is None:  # with LoRA, TRL's reference is the adapter-free base itself
        reference = AutoModelForCausalLM.from_pretrained(job.base, use_safetensors=True, trust_remote_code=False)
    config = trl_config(DPOConfig, job.out, params=count_params(model), seed=job.seed, precision=job.precision,
                        defaults={"max_length": min(512, context_length(job.base)), "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
                                  "num_train_epochs": 2, "learning_rate": 5e-4, "beta": 0.1,
                                  "lr_scheduler_type": "cosine", "warmup_ratio": 0.05, "eval_strategy": "no"},
                        overrides=job.overrides)
    trainer = DPOTrainer(model=model, ref_model=reference, args=config, train_dataset=preference_dataset(train),
                         eval_dataset=preference_dataset(held) if held else None, processing_class=tokenizer,
                         peft_config=peft_config(job.lora, "CAUSAL_LM"))
    return trainer, {"train_pairs": len(train), "heldout_pairs": len(held), "heldout": held}


def evaluate_trainer(trainer: Any, facts: dict[str, Any]) -> dict[str, Any]:
    """Held-out implicit-reward accuracy and margin (TRL's eval rewards/accuracies, rewards/margins)."""
    if not facts["heldout"]:
        return {}
    metrics = trainer.evaluate()
    return {"heldout_reward_accuracy": metrics.get("eval_rewards/accuracies"),
            "heldout_reward_margin": metrics.get("eval_rewards/margins"), "heldout_loss": metrics.get("eval_loss")}


__all__ = ["build_trainer", "evaluate_trainer"]
