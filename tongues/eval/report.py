"""Write an evaluation's results: results.json, results.md, plots, per-item samples, model card.

results.md has one row per task and one column per model (headline metric with its 95%
bootstrap interval), then the paired-bootstrap comparisons. bits_per_byte.png shows bits per
byte per language per model; accuracy.png multiple-choice accuracy with 95% intervals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tongues.eval.registry import HEADLINE
from tongues.manifest import atomic_path, write_json

CARD_START = "<!-- tongues-eval:start -->"
CARD_END = "<!-- tongues-eval:end -->"


def write_report(run: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write every output of `run` (an EvalRun) into out_dir; returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    write_json(paths["json"], run.to_json())
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown(run), encoding="utf-8")
    for model, per_task in run.outcomes.items():
        for task, outcome in per_task.items():
            if outcome.records:
                path = out / "samples" / model.replace("/", "__") / f"{task}.jsonl"
                with atomic_path(path) as tmp:
                    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in outcome.records),
                                   encoding="utf-8")
    paths.update(plots(run, out))
    return paths


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _cell(run: Any, model: str, task: str, metric: str) -> str:
    value = run.outcomes[model][task].metrics.get(metric)
    ci = run.intervals.get(model, {}).get(task, {}).get(metric)
    if ci and value is not None:
        return f"{_fmt(value)} ({_fmt(ci[0])}–{_fmt(ci[1])})"
    return _fmt(value)


def markdown(run: Any) -> str:
    """The results table (tasks × models) and the significance table, as Markdown."""
    models = [m.name for m in run.models]
    lines = ["| task | lang | v | items | metric | " + " | ".join(models) + " |",
             "|---|---|---|---|---|" + "---|" * len(models)]
    for task in run.tasks:
        spec = task.spec
        metric, higher = HEADLINE[spec.kind]
        arrow = "↑" if higher else "↓"
        extra = ["acc_norm"] if spec.kind == "multiple_choice" else (["exact_match"] if spec.kind == "generation" else [])
        for i, name in enumerate([metric, *extra]):
            head = f"| {spec.task} | {spec.language} | {spec.version} | {len(task.docs)} |" if i == 0 else "| | | | |"
            cells = " | ".join(_cell(run, m, spec.task, name) for m in models)
            lines.append(f"{head} {name} {arrow if i == 0 else ''} | {cells} |")
    text = ["# Evaluation", "",
            f"{len(models)} model(s), {len(run.tasks)} task(s); values with 95% bootstrap intervals "
            f"({run.config.bootstrap} resamples, seed {run.config.seed}); "
            f"{run.config.num_fewshot}-shot where the task allows.", "", *lines, ""]
    text += ["Models:", ""] + [f"- `{m.name}`: {m.path} (model.safetensors sha256 {str(m.sha256)[:12]}, "
                               f"{m.parameters or '?'} parameters)" for m in run.models] + [""]
    headline = [c for c in run.comparisons if c["metric"] == HEADLINE[run._spec(c["task"]).kind][0]]
    if headline:
        text += ["## Paired comparisons (paired bootstrap, same items)", "",
                 "| task | metric | A | B | A − B | 95% CI | p | significant |", "|---|---|---|---|---|---|---|---|"]
        for c in headline:
            mark = f"yes: {c['better']} better" if c["significant"] else "no"
            text.append(f"| {c['task']} | {c['metric']} | {c['a']} | {c['b']} | {c['difference']:+.4f} | "
                        f"{c['ci'][0]:+.4f} – {c['ci'][1]:+.4f} | {c['p_value']:.3f} | {mark} |")
        text.append("")
    return "\n".join(text)


def plots(run: Any, out: Path) -> dict[str, Path]:
    """bits_per_byte.png and accuracy.png (when there are such tasks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: dict[str, Path] = {}
    models = [m.name for m in run.models]
    width = 0.8 / max(len(models), 1)
    for kind, metric, filename, title in (
        ("bits_per_byte", "bits_per_byte", "bits_per_byte.png", "bits per UTF-8 byte by language (lower is better)"),
        ("multiple_choice", "acc", "accuracy.png", "multiple-choice accuracy, 95% bootstrap interval"),
    ):
        tasks = [t for t in run.tasks if t.spec.kind == kind]
        if not tasks:
            continue
        labels = [f"{t.spec.language}" if kind == "bits_per_byte" and len({x.spec.language for x in tasks}) == len(tasks)
                  else t.spec.task for t in tasks]
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(tasks) * max(1, len(models)) ** 0.5 + 2), 4))
        for k, model in enumerate(models):
            values, low, high = [], [], []
            for t in tasks:
                v = run.outcomes[model][t.spec.task].metrics.get(metric) or 0.0
                ci = run.intervals.get(model, {}).get(t.spec.task, {}).get(metric, [v, v])
                values.append(v)
                low.append(max(0.0, v - ci[0]))
                high.append(max(0.0, ci[1] - v))
            xs = [i + k * width for i in range(len(tasks))]
            ax.bar(xs, values, width, yerr=[low, high], capsize=3, label=model)
        if kind == "multiple_choice":
            for i, t in enumerate(tasks):
                chance = _chance(run, t.spec.task)
                if chance:
                    ax.hlines(chance, i - width / 2, i + width * (len(models) - 0.5), colors="grey", linestyles="dashed")
            ax.set_ylim(0, 1)
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(tasks))])
        ax.set_xticklabels(labels, rotation=20 if kind == "multiple_choice" else 0, ha="right" if kind == "multiple_choice" else "center")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(metric)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = out / filename
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written[kind] = path
    return written


def _chance(run: Any, task: str) -> float | None:
    """Expected accuracy of guessing (mean of 1 / number of choices), from the first model's records."""
    outcome = next(iter(run.outcomes.values()))[task]
    counts = [len(r["loglikelihoods"]) for r in outcome.records if "loglikelihoods" in r]
    return sum(1 / c for c in counts) / len(counts) if counts else None


def model_card_section(run: Any, model: str) -> str:
    """The '## Evaluation' section of a model card: this model's numbers, marked for re-writing."""
    rows = ["| task | language | metric | value | 95% CI | items |", "|---|---|---|---|---|---|"]
    per_task = run.outcomes[model]
    for task in run.tasks:
        spec = task.spec
        metric = HEADLINE[spec.kind][0]
        names = [metric] + (["acc_norm"] if spec.kind == "multiple_choice" else []) + \
                (["exact_match"] if spec.kind == "generation" else [])
        for name in names:
            value = per_task[spec.task].metrics.get(name)
            ci = run.intervals.get(model, {}).get(spec.task, {}).get(name)
            rows.append(f"| {spec.task} (v{spec.version}) | {spec.language} | {name} | {_fmt(value)} | "
                        f"{(_fmt(ci[0]) + '–' + _fmt(ci[1])) if ci else '–'} | {per_task[spec.task].n_items} |")
    intro = ("Evaluated with `tongues eval` on the embedded tasks of its language(s): bits per UTF-8 byte on "
             "held-out prose (comparable across tokenizers), multiple choice by log-likelihood with native "
             f"prompts, and greedy generation scored by exact match and chrF. {run.config.num_fewshot}-shot, "
             f"seed {run.config.seed}; intervals are 95% bootstrap over items.")
    return "\n".join([CARD_START, "## Evaluation", "", intro, "", *rows, "", CARD_END])


def update_model_card(model_dir: str | Path, section: str) -> Path:
    """Put `section` into <model_dir>/README.md: replace the marked one, else append it."""
    path = Path(model_dir) / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    start, end = text.find(CARD_START), text.find(CARD_END)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(CARD_END):]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
