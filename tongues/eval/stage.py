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
    update_model_card(model_dir, model_card_section(run, model))
    metrics: dict[str, Any] = {task: outcome.metrics for task, outcome in run.outcomes[model].items()}
    metrics["ci95"] = run.intervals.get(model, {})
    metrics["headline"] = headline(run, model)
    return metrics


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
        parts.append(f"{label} {value:.3f}" if isinstance(value, float) else f"{label} –")
    return ", ".join(parts)
