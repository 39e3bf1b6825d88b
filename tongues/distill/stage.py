"""The recipe stage `distill-<name>` (recipe key `students.<name>`)."""

from __future__ import annotations

from typing import Any

CHAT_STAGES = ("grpo", "dpo", "sft")


def teacher_stage(recipe: Any, spec: str) -> str | None:
    """The stage whose model teaches: "ko" is model ko's last stage (grpo, dpo, sft, else pretrain),
    "ko:pretrain" (or :sft, ...) a chosen one; None when `spec` is not a recipe model (a path)."""
    name, _, which = spec.partition(":")
    model = recipe.models.get(name)
    if model is None:
        return None
    if which:
        return f"{which}-{name}"
    instruct = model.instruct
    for stage in CHAT_STAGES:
        if instruct is not None and getattr(instruct, stage) is not None:
            return f"{stage}-{name}"
    return f"pretrain-{name}"


def run_stage(ctx: Any) -> dict[str, Any]:
    from tongues.distill.assistant import DistillJob, distill

    cfg = ctx.config
    extra = ctx.stage.extra
    teacher = str(ctx.inputs[extra["teacher_input"]] / "model") if extra.get("teacher_input") else cfg.teacher
    data = list(cfg.data)
    if not data and extra.get("tokens_input"):
        data = [str(ctx.inputs[extra["tokens_input"]])]
    job = DistillJob(teacher=teacher, data=data, out=ctx.out_dir, method=cfg.method, student=cfg.dir,
                     student_params=cfg.params, student_layers=cfg.layers, tokenizer=cfg.tokenizer,
                     objective=cfg.objective, temperature=cfg.temperature, alpha=cfg.alpha, k=cfg.top_k,
                     overrides=dict(cfg.set), seed=ctx.seed, scratch=cfg.scratch)
    metrics = distill(job, log=lambda m: print(f"  {m}", flush=True))
    rows = metrics["comparison"]["models"]
    bpb = next((t for t in metrics["comparison"]["tasks"] if t.endswith("_heldout_bpb")), None)
    if bpb:
        for name, row in rows.items():
            metrics.setdefault("summary", []).append({
                "table": f"Distillation {ctx.stage.name} (held-out; gap recovered "
                         f"{metrics['comparison'].get('gap_recovered', float('nan')):.0%})",
                "columns": ["model", "params", "bits/byte", "MC acc", "decode tok/s"],
                "row": [name, f"{row['params']:,}", f"{row.get(f'{bpb}.bits_per_byte', float('nan')):.3f}",
                        f"{row.get(bpb.replace('_heldout_bpb', '_mc') + '.acc', float('nan')):.2f}",
                        f"{row['decode_tokens_per_s']:.0f}"]})
    from tongues.distill.report import headline

    metrics["headline"] = headline(metrics["comparison"])
    return metrics


__all__ = ["run_stage", "teacher_stage"]
