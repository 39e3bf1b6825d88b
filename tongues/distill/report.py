"""The distillation report: teacher, distilled student and scratch student side by side.

Per model: held-out bits per byte and multiple-choice accuracy on the embedded tasks of its
language (`tongues eval`), chat chrF and language consistency when it is a chat model,
parameters, size on disk, decode tokens/s at batch 1 on this CPU; and the gap recovered,
(bpb_scratch - bpb_student) / (bpb_scratch - bpb_teacher): 1 is the teacher's quality, 0 no better
than training the same student without a teacher.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tongues.manifest import atomic_path, write_json


def disk_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 2**20


def decode_speed(directory: Path, tokens: int = 32, prompt: str = "옛날") -> float:
    """Tokens per second of greedy decoding at batch 1 (one thread-count as torch has it)."""
    from tongues.infer.generate import load

    lm = load(directory, device="cpu")
    lm.generate(prompt, max_new_tokens=4, temperature=0)  # warm-up
    start = time.perf_counter()
    result = lm.generate(prompt, max_new_tokens=tokens, temperature=0, return_details=True)
    return len(result.token_ids) / max(1e-9, time.perf_counter() - start)


def compare(models: dict[str, Path], job: Any, log: Any = print) -> dict[str, Any]:
    """The side-by-side numbers of `models` ({"teacher": dir, "student": dir, "scratch": dir})."""
    from tongues.eval.config import EvalConfig
    from tongues.eval.registry import embedded_tasks
    from tongues.eval.runner import evaluate_models, parameter_count
    from tongues.instruct.evaluate import model_languages

    languages = sorted({lang for d in models.values() for lang in model_languages(d)})
    tasks = job.eval_tasks or [t for t in embedded_tasks(languages) if t.endswith(("_heldout_bpb", "_mc"))]
    rows: dict[str, dict[str, Any]] = {name: {"params": parameter_count(d), "disk_mb": round(disk_mb(d), 2),
                                              "decode_tokens_per_s": round(decode_speed(d), 1)}
                                       for name, d in models.items()}
    if tasks:
        run = evaluate_models(list(models.values()), EvalConfig(tasks=tasks, bootstrap=100), job.out / "eval",
                              names=list(models), progress=False, log=lambda _m: None)
        for name in models:
            for task, outcome in run.outcomes[name].items():
                for metric in ("bits_per_byte", "acc", "chrf", "language_consistency"):
                    if metric in outcome.metrics:
                        rows[name][f"{task}.{metric}"] = outcome.metrics[metric]
    out: dict[str, Any] = {"models": rows, "tasks": tasks}
    bpb = next((t for t in tasks if t.endswith("_heldout_bpb")), None)
    if bpb and {"teacher", "student", "scratch"} <= set(rows):
        t, s, z = (rows[n].get(f"{bpb}.bits_per_byte") for n in ("teacher", "student", "scratch"))
        if None not in (t, s, z) and z != t:
            out["gap_recovered"] = (z - s) / (z - t)
    if "teacher" in rows and "student" in rows:
        out["student_speedup"] = rows["student"]["decode_tokens_per_s"] / max(1e-9, rows["teacher"]["decode_tokens_per_s"])
        out["size_ratio"] = rows["student"]["params"] / max(1, rows["teacher"]["params"])
    log("distill: " + headline(out))
    return out


def headline(comparison: dict[str, Any]) -> str:
    rows, tasks = comparison["models"], comparison["tasks"]
    bpb = next((t for t in tasks if t.endswith("_heldout_bpb")), None)
    parts = []
    if bpb:
        parts.append("held-out bpb " + ", ".join(f"{n} {r[f'{bpb}.bits_per_byte']:.3f}" for n, r in rows.items()
                                                 if f"{bpb}.bits_per_byte" in r))
    if "gap_recovered" in comparison:
        parts.append(f"gap recovered {comparison['gap_recovered']:.0%}")
    if "student_speedup" in comparison:
        parts.append(f"student {comparison['size_ratio']:.0%} of the teacher's size, "
                     f"{comparison['student_speedup']:.1f}x its decode speed")
    return "; ".join(parts)


def write_report(job: Any, metrics: dict[str, Any]) -> None:
    comparison = metrics["comparison"]
    write_json(job.out / "metrics.json", metrics)
    rows = comparison["models"]
    keys = sorted({k for r in rows.values() for k in r})
    lines = [f"# Distillation ({job.method}): {headline(comparison)}", "",
             f"- teacher: `{job.teacher}` ({metrics['teacher_params']:,} parameters)",
             f"- student: {metrics['student_init']} init, {metrics['student_params']:,} parameters",
             f"- data: {', '.join(job.data)}", "",
             "| metric | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for key in keys:
        cells = []
        for name in rows:
            v = rows[name].get(key)
            cells.append("–" if v is None else f"{v:.4g}" if isinstance(v, float) else f"{v:,}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for key in ("gap_recovered", "student_speedup", "size_ratio"):
        if key in comparison:
            lines.append(f"\n{key}: {comparison[key]:.3f}")
    for key in ("cache_seconds", "student_seconds", "scratch_seconds", "cost_per_token_vs_scratch"):
        if key in metrics:
            lines.append(f"\n{key}: {metrics[key]:.3g}")
    with atomic_path(job.out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    student = job.out / "student" / "model" / "README.md"
    if student.is_file():
        card = student.read_text(encoding="utf-8")
        section = ("\n## Distillation\n\n" + f"Distilled from `{job.teacher}` by tongues distill, method "
                   f"{job.method} ({json.dumps(metrics.get('kd') or {})}); {headline(comparison)}.\n")
        student.write_text(card + section, encoding="utf-8")


__all__ = ["compare", "decode_speed", "disk_mb", "headline", "write_report"]
