"""Export a checkpoint as a Hugging Face model directory that transformers loads with no tongues import.

Every checkpoint already holds the weights in Hugging Face format (``model/``: config.json,
model.safetensors, generation_config.json); export copies them unchanged, adds the tokenizer
files (with their chat template), a generation config (EOS ids 3 and 5, pad 0), the training
curve and a model card. The directory is written atomically.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from tongues.errors import DataError
from tongues.lm import checkpoint as ckpt
from tongues.lm.model_card import plot_training_curve, read_jsonl, render
from tongues.manifest import atomic_path, sha256_file, write_json

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "added_tokens.json", "chat_template.jinja", "tongues_tokenizer.json")
RUN_INFO = "run.json"


def resolve_checkpoint(path: str | Path, step: int | None = None, best: bool = False) -> Path:
    """A checkpoint directory from a checkpoint path or a run directory (latest, `step`, or `best`:
    the lowest validation loss, kept by `export: best`)."""
    path = Path(path)
    if (path / ckpt.STATE).exists():
        return path
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if best:
        found_best = ckpt.best_checkpoint(root)
        if found_best is None:
            raise DataError(f"{path}: no best-validation checkpoint (the run had no validation, or export: last)")
        return found_best
    found = ckpt.list_checkpoints(root)
    if step is not None:
        found = [p for p in found if ckpt.read_state(p)["step"] == step]
    if not found:
        which = f"step {step}" if step is not None else "any"
        raise DataError(f"{path}: no complete checkpoint ({which}) here or under {path}/checkpoints")
    return found[-1]


def export_model(
    checkpoint: str | Path,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    prepared_dirs: list[str | None] | None = None,
    plan: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write the Hugging Face model directory `out_dir` from `checkpoint` (see the module docstring).

    `run_dir` (the training output directory) supplies the curves and, through run.json, the
    tokenizer and corpora when they are not given; `prepared_dirs` the data cards' stats.json.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    run_dir = Path(run_dir) if run_dir else checkpoint.parent.parent
    info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8")) if (run_dir / RUN_INFO).exists() else {}
    tokenizer_dir = Path(tokenizer_dir or info.get("tokenizer_dir") or "")
    if not (tokenizer_dir / "tokenizer.json").exists():
        raise DataError(f"export: {tokenizer_dir or '(none)'} is not a tokenizer directory; pass --tokenizer")
    if prepared_dirs is None:
        prepared_dirs = [c.get("prepared_dir") for c in info.get("corpora", {}).values()]
    state = ckpt.read_state(checkpoint)
    metrics = dict(metrics or {})
    if "val_bpb" not in metrics:  # a chosen checkpoint: its own step's validation, if one was run
        evals = [r for r in read_jsonl(run_dir / "eval.jsonl") if r["step"] <= state["step"]]
        if evals:
            last = evals[-1]
            metrics.update(val_loss=last["val_loss"], val_bpb=last["val_bpb"],
                           val={k: v for k, v in last.items() if isinstance(v, dict)})
    metrics.setdefault("steps", state["step"])
    metrics.setdefault("tokens", state.get("tokens"))
    metrics.setdefault("skipped_steps", state.get("skipped"))
    if info.get("settings"):
        metrics.setdefault("settings", info["settings"])
    with atomic_path(out_dir) as tmp:
        shutil.copytree(checkpoint / "model", tmp)
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).exists():
                shutil.copy2(tokenizer_dir / name, tmp / name)
        config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
        config["use_cache"] = True  # training turned the KV cache off; generation wants it
        write_json(tmp / "config.json", config)
        _write_generation_config(tmp)
        has_curve = plot_training_curve(run_dir, tmp / "training_curve.png")
        metrics["params"] = metrics.get("params") or _count_params(tmp)
        corpora = []
        for i, d in enumerate(prepared_dirs or []):
            stats = _read_stats(d)
            corpora.append({"name": Path(d).name if d else f"corpus{i}", "lang": stats.get("lang"),
                            "license": stats.get("license", "unknown"), "stats": stats})
        tok_info = {"sha256": sha256_file(tokenizer_dir / "tokenizer.json"), "vocab_size": config.get("vocab_size")}
        card = render(name=out_dir.parent.name if out_dir.name == "model" else out_dir.name, config=config,
                      metrics=metrics, corpora=corpora, plan=plan, tokenizer=tok_info, has_curve=has_curve)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if plan:
            write_json(tmp / "plan.json", plan)
    return out_dir


def _write_generation_config(directory: Path) -> None:
    from transformers import GenerationConfig

    GenerationConfig(bos_token_id=2, eos_token_id=[3, 5], pad_token_id=0, do_sample=False,
                     max_new_tokens=128).save_pretrained(directory)


def _count_params(directory: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in directory.glob("*.safetensors"):
        with safe_open(f, "pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def _read_stats(prepared_dir: str | None) -> dict[str, Any]:
    if not prepared_dir or not (Path(prepared_dir) / "stats.json").exists():
        return {}
    return json.loads((Path(prepared_dir) / "stats.json").read_text(encoding="utf-8"))


SAMPLING = {"temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.2, "seed": 0}  # the sampled demo generations


def sample_generations(model_dir: str | Path, prompts: list[str], max_new_tokens: int = 30) -> list[dict[str, str]]:
    """Greedy and sampled (SAMPLING) continuations of `prompts` by the exported model, through
    `tongues.load` (valid UTF-8 text always)."""
    if not prompts:
        return []
    from tongues.infer.generate import load

    lm = load(model_dir, device="cpu")
    greedy = lm.generate(prompts, max_new_tokens=max_new_tokens, temperature=0)
    sampled = lm.generate(prompts, max_new_tokens=max_new_tokens, **SAMPLING)
    setting = ", ".join(f"{k} {v}" for k, v in SAMPLING.items())
    return [{"prompt": p, "completion": g, "sampled": s_, "sampling": setting}
            for p, g, s_ in zip(prompts, greedy, sampled, strict=True)]
