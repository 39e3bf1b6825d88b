"""GRPO: TRL's GRPOTrainer with plain transformers generation (no vLLM on a CPU), rule rewards and a
reward model combined with weights.

`--reward language_consistency=1,model:RUN/reward/model=0.5,length=0.2` (weight 1 when omitted):
- language_consistency: the share of the completion's letters in the expected language (the
  conversation's answer_lang, else the prompt's language; `tongues.langid`), in [0, 1];
- model:DIR: a tongues reward model (the `reward` stage), its logit through a sigmoid, in (0, 1);
- length: 1 for an answer of LENGTH_RANGE characters, less for shorter (n / min) or longer (max / n).
TRL calls each as f(prompts, completions, completion_ids, **dataset columns) and sums them with
`reward_weights`; each reward's mean is logged per step (reward curves in the report).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tongues.errors import ConfigError, DataError
from tongues.instruct.data import load_conversations, split_records
from tongues.instruct.evaluate import RewardScorer, expected_language
from tongues.instruct.training import context_length, count_params, fitting, peft_config, trl_config
from tongues.langid import language_consistency

LENGTH_RANGE = (10, 400)
RULES = ("language_consistency", "length")


def _text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(m.get("content", "") for m in completion)
    return str(completion)


def _last_user(prompt: Any) -> str:
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return users[-1] if users else ""
    return str(prompt)


def language_consistency_reward(prompts: list[Any], completions: list[Any], answer_lang: list[str | None] | None = None,
                                **_: Any) -> list[float]:
    langs = answer_lang or [None] * len(prompts)
    return [language_consistency(_last_user(p), _text(c), lang) for p, c, lang in zip(prompts, completions, langs,
                                                                                       strict=True)]


def length_reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    low, high = LENGTH_RANGE
    out = []
    for c in completions:
        n = len(_text(c).strip())
        out.append(n / low if n < low else high / n if n > high else 1.0)
    return out


def model_reward(directory: str | Path) -> Any:
    scorer = RewardScorer.load(directory)

    def reward_model(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        prompts = [p if isinstance(p, list) else [{"role": "user", "content": str(p)}] for p in prompts]
        return [1 / (1 + math.exp(-s)) for s in scorer.score(prompts, [_text(c) for c in completions])]

    reward_model.__name__ = "reward_model"
    return reward_model


def parse_rewards(spec: str) -> list[tuple[str, Any, float]]:
    """`"language_consistency,model:DIR=0.5,length=0.2"` -> [(name, function, weight), ...]."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, weight = part, 1.0
        if "=" in part:
            name, _, raw = part.rpartition("=")
            try:
                weight = float(raw)
            except ValueError:
                raise ConfigError(f"--reward {part!r}: the weight after '=' must be a number") from None
        if name == "language_consistency":
            out.append((name, language_consistency_reward, weight))
        elif name == "length":
            out.append((name, length_reward, weight))
        elif name.startswith("model:"):
            directory = Path(name[len("model:"):])
            if not (directory / "config.json").is_file():
                raise ConfigError(f"--reward {name}: {directory} is not a reward model directory (from `tongues reward`)")
            out.append(("reward_model", model_reward(directory), weight))
        else:
            raise ConfigError(f"--reward {name!r}: unknown reward (known: {', '.join(RULES)}, model:DIR)")
    if not out:
        raise ConfigError("--reward: give at least one reward, e.g. --reward language_consistency")
    return out


def prompt_dataset(conversations: list[Any]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": c.prompt, "answer_lang": expected_language(c), "reference": c.reference}
                              for c in conversations])


def build_trainer(job: Any, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    train, held = split_records(load_conversations(job.data))
    completion = int(job.overrides.get("max_completion_length", 48))
    room = context_length(job.base) - completion
    kept = fitting(tokenizer, train, room)
    if not kept:
        raise DataError(f"grpo: no prompt of {', '.join(job.data)} fits the base's context with {completion} "
                        f"completion tokens (at most {room} prompt tokens)")
    train = kept
    rewards = parse_rewards(job.rewards or "language_consistency")
    model = AutoModelForCausalLM.from_pretrained(job.base, use_safetensors=True, trust_remote_code=False)
    config = trl_config(GRPOConfig, job.out, params=count_params(model), seed=job.seed, precision=job.precision,
                        defaults={"num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": completion,
                                  "num_train_epochs": 1, "learning_rate": 1e-4, "temperature": 1.0, "logging_steps": 1,
                                  "use_vllm": False, "reward_weights": [w for _, _, w in rewards],
                                  "lr_scheduler_type": "constant", "eval_strategy": "no", "log_completions": False},
                        overrides=job.overrides)
    trainer = GRPOTrainer(model=model, reward_funcs=[f for _, f, _ in rewards], args=config,
                          train_dataset=prompt_dataset(train), processing_class=tokenizer,
                          peft_config=peft_config(job.lora, "CAUSAL_LM"))
    return trainer, {"train_prompts": len(train), "heldout_conversations": len(held), "heldout": held,
                     "rewards": {n: w for n, _, w in rewards}}


__all__ = ["build_trainer", "language_consistency_reward", "length_reward", "parse_rewards"]
