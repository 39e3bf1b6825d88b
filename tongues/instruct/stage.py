"""One instruction stage end to end: validate data, train with TRL, save, judge, report.

`run_job(Job)` is what `tongues sft|reward|dpo|grpo` and the recipe stages `sft-<model>`,
`reward-<model>`, `dpo-<model>`, `grpo-<model>` call. It writes into `job.out`:
model/ (a Hugging Face directory, chat template and model card with its lineage included),
train.jsonl (TRL's log), curves.png, metrics.json and report.md. Re-running an interrupted job
resumes from its last TRL checkpoint.

Judged on held-out data, the same for every stage (tongues.instruct.evaluate): the chat stages
(sft, dpo, grpo) by language consistency and chrF of greedy answers to held-out prompts, before
(the base) and after, by the reward model's win rate against the base when one is given, and by
the alignment tax (held-out prose bits per byte, before and after); the reward stage by pairwise
accuracy per failure kind.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tongues.errors import ConfigError
from tongues.manifest import atomic_path, write_json

METHODS = ("sft", "reward", "dpo", "grpo")
CURVES = {"sft": ("loss", "mean_token_accuracy"), "reward": ("loss", "accuracy", "margin"),
          "dpo": ("loss", "rewards/accuracies", "rewards/margins"),
          "grpo": ("reward", "rewards/language_consistency_reward/mean", "rewards/reward_model/mean",
                   "rewards/length_reward/mean", "completions/mean_length")}


@dataclass
class Job:
    method: str
    base: Path
    data: list[str]
    out: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    seed: int = 0
    precision: str = "auto"
    eval_data: list[str] | None = None  # conversations for the chat judgement (default: the data, or embedded)
    reward_model: Path | None = None  # judges win rates (and is a GRPO reward through `rewards`)
    rewards: str | None = None  # GRPO: "language_consistency,model:DIR=0.5,length"
    max_eval: int = 64  # held-out prompts answered for the chat judgement
    max_new_tokens: int = 64


def run_job(job: Job, log: Any = print) -> dict[str, Any]:
    """Train, save, judge and report one stage (module docstring); returns its metrics."""
    from tongues.instruct.training import check_base, load_tokenizer, plot_history, save_model, train

    if job.method not in METHODS:
        raise ConfigError(f"unknown instruction method {job.method!r} (known: {', '.join(METHODS)})")
    if not job.data:
        raise ConfigError(f"tongues {job.method}: no data (--data SRC..., e.g. embedded:ko)")
    job.base = check_base(job.base)
    if job.reward_model is not None and not (Path(job.reward_model) / "config.json").is_file():
        raise ConfigError(f"--reward-model {job.reward_model}: not a model directory (train one with `tongues reward`)")
    settings = job_settings(job)
    done = job.out / "metrics.json"
    if done.is_file() and (job.out / "model" / "config.json").is_file():
        previous = json.loads(done.read_text(encoding="utf-8"))
        if previous.get("job") == settings:
            log(f"{job.method}: {job.out} is complete for these settings; nothing to do ({previous.get('headline', '')})")
            return previous
    start = time.perf_counter()
    module = importlib.import_module(f"tongues.instruct.{job.method}")
    tokenizer = load_tokenizer(job.base)
    trainer, facts = module.build_trainer(job, tokenizer)
    log(f"{job.method}: {facts.get('train_conversations') or facts.get('train_pairs') or facts.get('train_prompts')} "
        f"training examples, {len(facts.get('heldout', []))} held out; base {job.base}")
    metrics: dict[str, Any] = {"method": job.method, "job": settings, **train(trainer, job.out)}
    if hasattr(module, "evaluate_trainer"):
        metrics.update({k: v for k, v in module.evaluate_trainer(trainer, facts).items() if v is not None})
    has_curve = plot_history(job.out, CURVES[job.method], job.out / "curves.png")
    model = trainer.model
    if job.method == "reward":
        metrics.update(_judge_reward(trainer, facts))
    metrics["seconds_training"] = round(time.perf_counter() - start, 1)
    card_facts = {k: v for k, v in facts.items() if k != "heldout"}
    model_dir = save_model(model, tokenizer, job.out, stage=job.method, base=job.base, data=job.data, metrics=metrics,
                           card="(written below)", plots=[job.out / "curves.png"] if has_curve else [])
    if job.method != "reward":
        metrics.update(judge_chat(job, model_dir, facts, log))
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    metrics["headline"] = headline(job.method, metrics)
    write_json(job.out / "metrics.json", metrics)
    report = render_report(job, model_dir, metrics, card_facts, has_curve)
    with atomic_path(job.out / "report.md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    (model_dir / "README.md").write_text(render_card(job, model_dir, metrics, card_facts, has_curve), encoding="utf-8")
    log(f"{job.method}: {metrics['headline']}")
    return metrics


def job_settings(job: Job) -> dict[str, Any]:
    """What the output depends on: a finished output with the same settings is not trained again."""
    return json.loads(json.dumps({"method": job.method, "base": str(job.base), "data": job.data,
                                  "overrides": job.overrides, "lora": job.lora, "seed": job.seed,
                                  "precision": job.precision, "rewards": job.rewards}, default=str))


def _judge_reward(trainer: Any, facts: dict[str, Any]) -> dict[str, Any]:
    """Held-out pairwise accuracy of the trained reward model, overall and per failure kind."""
    from tongues.instruct.evaluate import RewardScorer, pairwise_accuracy

    if not facts["heldout"]:
        return {}
    result = pairwise_accuracy(RewardScorer(trainer.model, trainer.processing_class), facts["heldout"])
    return {"heldout_accuracy": result["accuracy"], "heldout_pairs": result["n"],
            "heldout_accuracy_by_failure": result["by_failure"]}


def chat_heldout(job: Job, facts: dict[str, Any], languages: list[str]) -> list[Any]:
    """Held-out conversations for the chat judgement: --eval-data, else the job's own held-out
    conversations, else the embedded sets' of the model's languages."""
    from tongues.instruct.data import load_conversations, split_records

    if job.eval_data:
        _, held = split_records(load_conversations(job.eval_data))
    elif facts.get("heldout") and hasattr(facts["heldout"][0], "messages"):
        held = facts["heldout"]
    else:
        sources = [f"embedded:{lang}" for lang in languages]
        held = split_records(load_conversations(sources))[1] if sources else []
    return held


def judge_chat(job: Job, model_dir: Path, facts: dict[str, Any], log: Any) -> dict[str, Any]:
    from tongues.instruct.evaluate import (
        RewardScorer,
        bits_per_byte,
        chat_answers,
        chat_scores,
        heldout_texts,
        model_languages,
        win_rate,
    )
    from tongues.instruct.training import context_length, fitting, load_tokenizer

    languages = model_languages(model_dir) or model_languages(job.base)
    room = context_length(model_dir) - job.max_new_tokens
    held = fitting(load_tokenizer(model_dir), chat_heldout(job, facts, languages), room)[: job.max_eval]
    if not held:
        log(f"{job.method}: no held-out prompt fits the context with {job.max_new_tokens} new tokens; chat not judged")
        return {}
    before_answers = _previous_answers(job, held) or chat_answers(job.base, held, job.max_new_tokens)
    after_answers = chat_answers(model_dir, held, job.max_new_tokens)
    before, after = chat_scores(held, before_answers), chat_scores(held, after_answers)
    out: dict[str, Any] = {"chat_prompts": len(held),
                           "language_consistency_before": before["language_consistency"],
                           "language_consistency": after["language_consistency"],
                           "chrf_before": before["chrf"], "chrf": after["chrf"]}
    if job.reward_model is not None:
        out["win_rate_vs_base"] = win_rate(RewardScorer.load(job.reward_model), held, after_answers, before_answers)
    from tongues.instruct.evaluate import expected_language

    texts = heldout_texts(languages or sorted({lang for c in held if (lang := expected_language(c)) in ("ko", "hi", "vi")}))
    if texts:
        bpb_before, bpb_after = bits_per_byte(job.base, texts), bits_per_byte(model_dir, texts)
        out.update(prose_bpb_before=bpb_before, prose_bpb=bpb_after, alignment_tax=bpb_after / bpb_before - 1)
    out["example"] = {"prompt": held[0].prompt[-1]["content"], "answer": after_answers[0],
                      "base_answer": before_answers[0], "reference": held[0].reference}
    with atomic_path(job.out / "answers.jsonl") as tmp:
        tmp.write_text("".join(json.dumps({"id": c.id, "prompt": c.prompt, "reference": c.reference, "base": b,
                                           "answer": a, "max_new_tokens": job.max_new_tokens},
                                          ensure_ascii=False) + "\n"
                               for c, b, a in zip(held, before_answers, after_answers, strict=True)), encoding="utf-8")
    return out


def _previous_answers(job: Job, held: list[Any]) -> list[str] | None:
    """The base's own greedy answers, when the base is a stage output that answered the same
    held-out prompts with the same budget (greedy decoding: the same answers, not generated twice)."""
    path = Path(job.base).parent / "answers.jsonl"
    if not path.is_file():
        return None
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("max_new_tokens") == job.max_new_tokens:
            rows[row["id"]] = row
    if not all(c.id in rows and rows[c.id]["prompt"] == c.prompt for c in held):
        return None
    return [rows[c.id]["answer"] for c in held]


def headline(method: str, m: dict[str, Any]) -> str:
    parts = []
    if method == "reward" and "heldout_accuracy" in m:
        parts.append(f"held-out pair accuracy {m['heldout_accuracy']:.2f}")
    if method == "dpo" and m.get("heldout_reward_accuracy") is not None:
        parts.append(f"implicit-reward accuracy {m['heldout_reward_accuracy']:.2f}")
    if method == "sft" and "heldout_loss" in m:
        parts.append(f"held-out answer loss {m['heldout_loss']:.3f}")
    if "language_consistency" in m:
        parts.append(f"language consistency {m['language_consistency_before']:.2f}→{m['language_consistency']:.2f}")
    if "chrf" in m:
        parts.append(f"chrF {m['chrf']:.1f}")
    if "win_rate_vs_base" in m:
        parts.append(f"win rate {m['win_rate_vs_base']:.2f}")
    if "alignment_tax" in m:
        parts.append(f"alignment tax {100 * m['alignment_tax']:+.1f}%")
    return ", ".join(parts) or f"{m.get('steps', 0)} steps"


def _rows(metrics: dict[str, Any]) -> list[str]:
    rows = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        if isinstance(value, float):
            rows.append(f"| {key} | {value:.4g} |")
        elif isinstance(value, (int, str)) and key not in ("headline",):
            rows.append(f"| {key} | {value} |")
        elif isinstance(value, dict) and key.endswith("by_failure"):
            rows += [f"| {key}: {k} | {v:.3f} |" for k, v in value.items()]
    return rows


def render_report(job: Job, model_dir: Path, metrics: dict[str, Any], facts: dict[str, Any], curve: bool) -> str:
    from tongues.instruct.training import lineage_text, read_lineage

    lines = [f"# {job.method}: {metrics['headline']}", "", f"- base: `{job.base}`",
             f"- lineage: {lineage_text(read_lineage(model_dir))}", f"- data: {', '.join(job.data)}",
             f"- facts: {json.dumps(facts, ensure_ascii=False)}", "", *_rows(metrics)]
    example = metrics.get("example")
    if example:
        lines += ["", "## One held-out exchange", "", f"- prompt: {example['prompt']}",
                  f"- base: {example['base_answer']}", f"- after {job.method}: {example['answer']}",
                  f"- reference: {example['reference']}"]
    if curve:
        lines += ["", "![training curves](curves.png)"]
    return "\n".join(lines) + "\n"


def render_card(job: Job, model_dir: Path, metrics: dict[str, Any], facts: dict[str, Any], curve: bool) -> str:
    from tongues.instruct.training import lineage_text, read_lineage

    lineage = read_lineage(model_dir)
    kind = "reward model (sequence classification, one logit)" if job.method == "reward" else "chat model"
    load = ("AutoModelForSequenceClassification" if job.method == "reward" else "AutoModelForCausalLM")
    lines = [
        "---", "library_name: transformers", f"tags: [tongues, {job.method}, trl]", "---", "",
        f"# {model_dir.parent.name}: a {kind} made with tongues {job.method} (TRL)", "",
        f"**Lineage:** {lineage_text(lineage)}", "",
        *[f"- {e['stage']}: `{e['model']}`" + (f" (data: {', '.join(e['data'])})" if e.get("data") else "")
          for e in lineage],
        "", "## Use", "", "```python", f"from transformers import {load}, AutoTokenizer",
        f'model = {load}.from_pretrained("PATH")', 'tok = AutoTokenizer.from_pretrained("PATH")', "```", "",
        "The tokenizer carries the ChatML chat template; `tongues.load(PATH).chat(...)` answers conversations.", "",
        "## Training", "", f"TRL {job.method} on {', '.join(job.data)} ({json.dumps(facts, ensure_ascii=False)}); "
        f"settings overridden: {json.dumps(job.overrides) if job.overrides else 'none'}; "
        f"LoRA: {json.dumps(job.lora) if job.lora else 'no'} (merged).", "",
        "## Evaluation (held-out)", "", *_rows(metrics),
    ]
    if curve:
        lines += ["", "![training curves](curves.png)"]
    lines += ["", "Small models trained on small embedded sets: a demonstration of the pipeline, not an assistant "
              "to rely on."]
    return "\n".join(lines) + "\n"


# ---- recipe stages --------------------------------------------------------------------------------


def run_stage(ctx: Any) -> dict[str, Any]:
    """Recipe stages sft-/reward-/dpo-/grpo-<model>: ctx.config is the method's InstructStageConfig;
    ctx.stage.extra: {"method", "model", "base_input", "reward_input"} (upstream stage names)."""
    extra = ctx.stage.extra
    base = ctx.inputs[extra["base_input"]] / "model"
    reward_dir = ctx.inputs[extra["reward_input"]] / "model" if extra.get("reward_input") else None
    cfg = ctx.config
    rewards = cfg.rewards
    if rewards and reward_dir is not None:
        rewards = rewards.replace("model:reward", f"model:{reward_dir}")
    job = Job(method=extra["method"], base=base, data=list(cfg.data), out=ctx.out_dir, overrides=dict(cfg.set),
              lora=cfg.lora, seed=ctx.seed, precision=cfg.precision, eval_data=cfg.eval_data or None,
              reward_model=reward_dir, rewards=rewards, max_eval=cfg.max_eval,
              max_new_tokens=cfg.max_new_tokens)
    metrics = run_job(job, log=lambda m: print(f"  {m}", flush=True))
    if extra["method"] != "reward" and "language_consistency" in metrics:
        metrics["summary"] = [{
            "table": "Instruction tuning (held-out prompts; before → after each stage)",
            "columns": ["stage", "language consistency", "chrF", "win rate vs its base", "alignment tax"],
            "row": [ctx.stage.name, f"{metrics['language_consistency_before']:.2f} → {metrics['language_consistency']:.2f}",
                    f"{metrics['chrf_before']:.1f} → {metrics['chrf']:.1f}",
                    f"{metrics['win_rate_vs_base']:.2f}" if "win_rate_vs_base" in metrics else "–",
                    f"{100 * metrics['alignment_tax']:+.1f}%" if "alignment_tax" in metrics else "–"]}]
        example = metrics.get("example")
        if example:
            metrics["samples"] = [{"prompt": example["prompt"], "completion": example["answer"]}]
    if extra["method"] == "reward" and "heldout_accuracy" in metrics:
        metrics["summary"] = [{"table": "Reward models (held-out preference pairs)",
                               "columns": ["stage", "pair accuracy", "worst failure kind"],
                               "row": [ctx.stage.name, f"{metrics['heldout_accuracy']:.2f}",
                                       _worst(metrics.get("heldout_accuracy_by_failure", {}))]}]
    return metrics


def _worst(by_failure: dict[str, float]) -> str:
    if not by_failure:
        return "–"
    kind = min(by_failure, key=by_failure.get)  # type: ignore[arg-type]
    return f"{kind} {by_failure[kind]:.2f}"


__all__ = ["Job", "METHODS", "run_job", "run_stage"]
