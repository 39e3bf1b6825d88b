"""SFT: TRL's SFTTrainer on conversations, loss on the assistant tokens only (assistant_only_loss).

Multi-turn conversations train every assistant turn (the chat template's {% generation %} markers
cover each assistant content and its <|im_end|>). Packing (`--set packing=true`) is off by default:
on a CPU without FlashAttention TRL packs by concatenation, which lets attention cross from one
conversation into the next (padding_free needs FlashAttention).
"""

from __future__ import annotations

from typing import Any

from tongues.instruct.data import load_conversations, split_records
from tongues.instruct.training import context_length, count_params, peft_config, trl_config


def conversations_dataset(conversations: list[Any]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"messages": c.messages} for c in conversations])


def build_trainer(job: Any, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    """(SFTTrainer, facts for the report) for `job` (a tongues.instruct.stage.Job)."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    train, held = split_records(load_conversations(job.data))
    model = AutoModelForCausalLM.from_pretrained(job.base, use_safetensors=True, trust_remote_code=False)
    config = trl_config(SFTConfig, job.out, params=count_params(model), seed=job.seed, precision=job.precision,
                        defaults={"assistant_only_loss": True, "max_length": min(512, context_length(job.base)), "packing": False,
                                  "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
                                  "num_train_epochs": 2, "learning_rate": 1e-3, "lr_scheduler_type": "cosine",
                                  "warmup_ratio": 0.05, "eval_strategy": "no"},
                        overrides=job.overrides)
    trainer = SFTTrainer(model=model, args=config, train_dataset=conversations_dataset(train),
                         eval_dataset=conversations_dataset(held) if held else None, processing_class=tokenizer,
                         peft_config=peft_config(job.lora, "CAUSAL_LM"))
    return trainer, {"train_conversations": len(train), "heldout_conversations": len(held), "heldout": held}


def evaluate_trainer(trainer: Any, facts: dict[str, Any]) -> dict[str, Any]:
    """Held-out assistant-token loss (nats/token) and bits per byte of the assistant text."""
    import math

    held = facts["heldout"]
    if not held:
        return {}
    loss = trainer.evaluate()["eval_loss"]
    tokenizer = trainer.processing_class
    # nats over the assistant tokens (the end-of-turn token included) per UTF-8 byte of the answers
    tokens = bytes_ = 0
    for c in held:
        enc = tokenizer.apply_chat_template(c.messages, return_assistant_tokens_mask=True, return_dict=True)
        tokens += sum(enc["assistant_masks"])
        bytes_ += sum(len(m["content"].encode("utf-8")) for m in c.messages if m["role"] == "assistant")
    return {"heldout_loss": loss, "heldout_bpb": loss * tokens / math.log(2) / max(1, bytes_)}


__all__ = ["build_trainer", "conversations_dataset", "evaluate_trainer"]
