"""What every instruction stage shares around its TRL trainer: loading the base, the TRL config with
tongues' defaults and `--set` overrides, LoRA, resume, and writing the model directory.

The stage modules (sft.py, reward.py, dpo.py, grpo.py) build a dataset, call `trl_config`, hand
both to TRL's trainer of the same name and call `train` and `save_model`: TRL trains.

Defaults tongues picks (each can be overridden with `--set KEY=VALUE`, any key of the TRL config):
- `use_cpu` when there is no GPU; `bf16` only where bf16 matmuls are fast (`precision: auto`,
  as pretraining: TRL's own default of bf16=True raises on a CPU without it);
- gradient checkpointing off below 100M parameters (it only costs time there);
- checkpoints every `save_steps` optimizer steps into out/checkpoints (one kept): an interrupted
  stage resumes from it when run again; no external loggers (metrics go to train.jsonl).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

from tongues.errors import ConfigError, DataError
from tongues.manifest import atomic_path, write_json

SMALL_MODEL = 100_000_000  # below this, gradient checkpointing only costs time
_CHECKPOINTING = "gradient_checkpointing"
LINEAGE = "lineage.json"
_GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_sets(items: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """`["learning_rate=1e-4", "num_train_epochs=3"]` -> {"learning_rate": 1e-4, ...} (YAML scalars)."""
    import yaml

    if not items:
        return {}
    if isinstance(items, dict):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set learning_rate=1e-4")
        parsed = yaml.safe_load(value) if value.strip() else None
        if isinstance(parsed, str) and _NUMBER.fullmatch(parsed.strip()):
            parsed = float(parsed)  # YAML 1.1 reads 1e-4 (no dot) as a string
        out[key.strip()] = parsed
    return out


def parse_lora(spec: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """`"r=16,alpha=32"` (or a dict) -> LoRA settings {r, alpha, dropout}; None for no LoRA."""
    if not spec:
        return None
    if isinstance(spec, str):
        pairs = [p.split("=", 1) for p in spec.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ConfigError(f"--lora {spec!r}: expected r=16,alpha=32[,dropout=0.05]")
        spec = {k.strip(): float(v) for k, v in pairs}
    allowed = {"r", "alpha", "dropout"}
    unknown = set(spec) - allowed
    if unknown:
        raise ConfigError(f"lora: unknown key(s) {', '.join(sorted(unknown))} (allowed: r, alpha, dropout)")
    r = int(spec.get("r", 16))
    if r < 1:
        raise ConfigError(f"lora: r must be >= 1, got {r}")
    return {"r": r, "alpha": float(spec.get("alpha", 2 * r)), "dropout": float(spec.get("dropout", 0.0))}


def peft_config(lora: dict[str, Any] | None, task: str) -> Any:
    if lora is None:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise ConfigError('LoRA needs peft: pip install "tongues[lora]"') from None
    return LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                      target_modules="all-linear", task_type=task)


def fast_bf16_here() -> bool:
    from tongues.plan.flops import fast_bf16

    return fast_bf16()


def trl_config(config_cls: type, out_dir: Path, *, params: int, seed: int, precision: str = "auto",
               defaults: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """A TRL config of `config_cls` with tongues' defaults (module docstring), then `defaults` of the
    stage, then the user's `overrides`; an unknown key is a ConfigError naming it and close matches."""
    import torch

    names = {f.name for f in dataclasses.fields(config_cls)}
    for key in overrides or {}:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=3)
            raise ConfigError(f"--set {key}: not a {config_cls.__name__} key"
                              + (f" (did you mean {', '.join(close)}?)" if close else ""))
    cuda = torch.cuda.is_available()
    bf16 = precision == "bf16" or (precision == "auto" and fast_bf16_here())
    values: dict[str, Any] = {
        "output_dir": str(out_dir / "checkpoints"),
        "use_cpu": not cuda,
        "bf16": bf16,
        "fp16": False,
        _CHECKPOINTING: params >= SMALL_MODEL,
        "report_to": [],
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 1,
        "logging_steps": 5,
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }
    values.update(defaults or {})
    values.update(overrides or {})
    if "activation_checkpointing" in names:  # transformers 5 renamed gradient_checkpointing
        for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                         ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
            if old in values:
                values[new] = values.pop(old)
    try:
        return config_cls(**{k: v for k, v in values.items() if k in names})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{config_cls.__name__}: {str(err).splitlines()[0]}") from None


def load_tokenizer(base: Path) -> Any:
    """The base's tokenizer, with tongues' marked ChatML template when the base has plain ChatML
    (TRL's assistant_only_loss needs {% generation %} markers; the rendered text is the same)."""
    from transformers import AutoTokenizer

    from tongues.tokenizers.export import CHAT_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    template = getattr(tokenizer, "chat_template", None) or ""
    if not template:
        raise DataError(f"{base}: the tokenizer has no chat template; instruction tuning needs one "
                        "(tongues tokenizers ship ChatML)")
    if not _GENERATION_MARKER.search(template) and "<|im_start|>" in template and "<|im_end|>" in tokenizer.get_vocab():
        tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_base(base: str | Path) -> Path:
    from tongues.hub import resolve_model_dir

    directory = resolve_model_dir(base)
    if not (directory / "config.json").is_file():
        raise DataError(f"--base {directory}: not a Hugging Face model directory (no config.json)")
    return directory


def context_length(base: Path) -> int:
    """The base's context in tokens (max_position_embeddings), 2048 when the config does not say."""
    config = json.loads((Path(base) / "config.json").read_text(encoding="utf-8"))
    return int(config.get("max_position_embeddings") or 2048)


def prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def fitting(tokenizer: Any, conversations: list[Any], room: int) -> list[Any]:
    """The conversations whose prompt (chat template, generation cue) is at most `room` tokens."""
    return [c for c in conversations if prompt_tokens(tokenizer, c.prompt) <= room]


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def last_checkpoint(out_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    root = out_dir / "checkpoints"
    return get_last_checkpoint(str(root)) if root.is_dir() else None


def train(trainer: Any, out_dir: Path) -> dict[str, Any]:
    """Run (or resume) the trainer; write its log history to out/train.jsonl; return train metrics."""
    resume = last_checkpoint(out_dir)
    result = trainer.train(resume_from_checkpoint=resume)
    history = trainer.state.log_history
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "train.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    metrics["resumed_from"] = resume
    metrics["steps"] = trainer.state.global_step
    return metrics


def plot_history(out_dir: Path, keys: tuple[str, ...], path: Path) -> bool:
    """Curves of `keys` over steps from train.jsonl (one panel each); False when nothing to plot."""
    rows = [json.loads(line) for line in (out_dir / "train.jsonl").read_text().splitlines() if line]
    series = {k: [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and "step" in r]
              for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (key, points) in zip(axes[0], series.items(), strict=True):
        ax.plot([s for s, _ in points], [v for _, v in points], marker=".")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def read_lineage(base: Path) -> list[dict[str, Any]]:
    """The stages that made `base`: its lineage.json, else [pretrain at base] for a pretrained model."""
    path = base / LINEAGE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return [{"stage": "pretrain" if (base / "training_curve.png").exists() else "base", "model": str(base)}]


def save_model(model: Any, tokenizer: Any, out_dir: Path, *, stage: str, base: Path, data: list[str],
               metrics: dict[str, Any], card: str, plots: list[Path] = ()) -> Path:
    """Write out/model: the weights (LoRA merged), tokenizer with its chat template, generation
    config, lineage.json (base -> ... -> this stage), README.md (the model card) and the plots."""
    from transformers import GenerationConfig

    if hasattr(model, "merge_and_unload"):  # a PEFT model: LoRA merged into the weights
        model = model.merge_and_unload()
    target = out_dir / "model"
    lineage = read_lineage(base) + [{"stage": stage, "model": str(target), "base": str(base), "data": data,
                                     "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}]
    with atomic_path(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None and hasattr(model, "generate"):
            gen = model.generation_config
            eos = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} - {None, tokenizer.unk_token_id}
            GenerationConfig(bos_token_id=gen.bos_token_id, eos_token_id=sorted(eos), pad_token_id=tokenizer.pad_token_id,
                             do_sample=False, max_new_tokens=128).save_pretrained(tmp)
        for name in ("tongues_tokenizer.json", "tokenizer.model"):  # the SentencePiece model: GGUF export reads it
            if (base / name).exists():
                shutil.copy2(base / name, tmp / name)
        write_json(tmp / LINEAGE, lineage)
        for plot in plots:
            if plot.exists():
                shutil.copy2(plot, tmp / plot.name)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return target


def lineage_text(lineage: list[dict[str, Any]]) -> str:
    return " → ".join(entry["stage"] for entry in lineage)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


__all__ = ["check_base", "load_tokenizer", "parse_lora", "parse_sets", "peft_config", "save_model", "train",
           "trl_config"]
