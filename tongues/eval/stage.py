"""The `eval-<model>` stage: evaluate an exported model on its languages' tasks, update its card.

Inputs: "pretrain-<model>", whose directory holds the exported model at `<dir>/model`. With no
tasks in the config, the model is evaluated on the embedded tasks (held-out bits per byte,
multiple choice, generation) of the languages of its corpora. Results go to the stage directory
(results.json, results.md, plots); the numbers go into the model card's "## Evaluation" section.
An interrupted stage resumes: finished tasks are read back from the stage's cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tongues.errors import ConfigError, DataError
from tongues.eval.config import EvalConfig


def model_languages(ctx: Any, model: str, model_dir: Path) -> list[str]:
    """The model's languages: those of its corpora in the recipe, else its tokenizer metadata."""
    recipe_model = getattr(ctx.recipe, "models", {}).get(model)
    if recipe_model is not None:
        langs = [ctx.recipe.corpora[c].lang for c in recipe_model.corpora if c in ctx.recipe.corpora]
        if langs:
            return sorted(set(langs))
    from tongues.eval.runner import model_info

    return model_info(model_dir).languages


def run_stage(ctx: Any) -> dict[str, Any]:
    """Evaluate the stage's model (see the module docstring); returns the metrics per task."""
    from tongues.eval.registry import embedded_tasks
    from tongues.eval.report import model_card_section, update_model_card
    from tongues.eval.runner import evaluate_models

    config: EvalConfig = ctx.config if isinstance(ctx.config, EvalConfig) else EvalConfig()
    model = ctx.stage.extra.get("model") or ctx.stage.name.removeprefix("eval-")
    pretrain = ctx.inputs.get(f"pretrain-{model}") or next(iter(ctx.input_of_kind("pretrain").values()), None)
    if pretrain is None:
        raise ConfigError(f"stage {ctx.stage.name}: needs the input pretrain-{model}")
    model_dir = Path(pretrain) / "model"
    if not (model_dir / "config.json").is_file():
        raise DataError(f"stage {ctx.stage.name}: {model_dir} holds no exported model (no config.json)")
    tasks = list(config.tasks)
    if not tasks:
        langs = model_languages(ctx, model, model_dir)
        tasks = embedded_tasks(langs)
        if not tasks:
            raise ConfigError(f"stage {ctx.stage.name}: no embedded tasks for languages {langs or 'unknown'}; "
                              f"set models.{model}.eval.tasks in the recipe")
    config = config.model_copy(update={"tasks": tasks})

    def log(message: str) -> None:
        print(f"  {message}", flush=True)

    run = evaluate_models([model_dir], config, ctx.out_dir, names=[model], log=log)
    add_trigram_floor(run, model, training_texts(Path(pretrain)), log)
    update_model_card(model_dir, model_card_section(run, model))
    metrics: dict[str, Any] = {task: outcome.metrics for task, outcome in run.outcomes[model].items()}
    metrics["ci95"] = run.intervals.get(model, {})
    metrics["headline"] = headline(run, model)
    metrics["summary"] = [
        {"table": "Held-out bits per byte (lower is better; ratio < 1 beats the character trigram)",
         "columns": ["model", "task", "bits/byte", "char trigram", "ratio"],
         "row": [model, name, f"{m['bits_per_byte']:.3f}", f"{m['trigram_bits_per_byte']:.3f}", f"{m['vs_trigram']:.2f}x"]}
        for name, m in metrics.items() if isinstance(m, dict) and "trigram_bits_per_byte" in m
    ]
    return metrics


def training_texts(pretrain_dir: Path) -> dict[str, list[str]]:
    """{language: documents} of the train splits a pretraining run used (from its run.json)."""
    import json

    from tongues.data.prepared import read_stats, read_texts

    info_path = pretrain_dir / "run.json"
    if not info_path.is_file():
        return {}
    texts: dict[str, list[str]] = {}
    for corpus in json.loads(info_path.read_text(encoding="utf-8")).get("corpora", {}).values():
        prepared = corpus.get("prepared_dir")
        if not prepared or not (Path(prepared) / "stats.json").is_file():
            continue
        texts.setdefault(read_stats(prepared).get("lang"), []).extend(read_texts(prepared, "train"))
    return texts


def add_trigram_floor(run: Any, model: str, texts: dict[str, list[str]], log: Any = print) -> None:
    """Beside each bits-per-byte result, the character trigram (`tongues.eval.ngram`) trained on the
    model's own training text and scored on the same documents: `trigram_bits_per_byte` and
    `vs_trigram` (the model's bits per byte over the trigram's; below 1 beats it)."""
    from tongues.eval.ngram import CharNGram
    from tongues.eval.task_kinds import bpb_texts

    floors: dict[str, CharNGram] = {}
    for task in run.tasks:
        lang = task.spec.language
        if task.spec.kind != "bits_per_byte" or not texts.get(lang):
            continue
        if lang not in floors:
            floors[lang] = CharNGram.fit(texts[lang])
        floor = floors[lang].bits_per_byte([t for _, t in bpb_texts(task)])
        metrics = run.outcomes[model][task.spec.task].metrics
        metrics["trigram_bits_per_byte"] = floor
        metrics["vs_trigram"] = metrics["bits_per_byte"] / floor
        log(f"{model} / {task.spec.task}: {metrics['bits_per_byte']:.4f} bits/byte, character trigram "
            f"{floor:.4f} ({metrics['vs_trigram']:.2f}x)")


def headline(run: Any, model: str) -> str:
    """A short summary for the run table, e.g. "ko bpb 1.234, ko_mc acc 0.310, ko_gen chrf 12.3"."""
    from tongues.eval.registry import HEADLINE

    parts = []
    for task in run.tasks:
        if task.spec.kind == "tokenizer_parity":
            continue
        metric = HEADLINE[task.spec.kind][0]
        value = run.outcomes[model][task.spec.task].metrics.get(metric)
        label = f"{task.spec.language} bpb" if metric == "bits_per_byte" else f"{task.spec.task} {metric}"
        text = f"{label} {value:.3f}" if isinstance(value, float) else f"{label} –"
        floor = run.outcomes[model][task.spec.task].metrics.get("trigram_bits_per_byte")
        if metric == "bits_per_byte" and isinstance(value, float) and floor:
            text += f" (trigram {floor:.3f}, {value / floor:.2f}x)"
        parts.append(text)
    return ", ".join(parts)
