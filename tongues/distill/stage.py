"""The recipe stage `distill-<name>` (recipe key `students.<name>`)."""

from __future__ import annotations

from pathlib import Path
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





def run_encoder_stage(ctx: Any) -> dict[str, Any]:
    """Recipe stage `encoder-<name>`: align a prompt encoder, report retrieval, render one image."""
    from tongues.distill.encoder import EncoderJob, read_parallel, train_encoder
    from tongues.resources import RESOURCES

    cfg, extra = ctx.config, ctx.stage.extra
    student = str(ctx.inputs[extra["student_input"]] / "model") if extra.get("student_input") else cfg.student
    parallel = list(cfg.parallel)
    if not parallel:
        from tongues.instruct.evaluate import model_languages

        parallel = [str(RESOURCES / "parallel" / f"en-{lang}.tsv") for lang in model_languages(Path(student))
                    if (RESOURCES / "parallel" / f"en-{lang}.tsv").is_file()]
    teacher, pipeline = cfg.teacher, cfg.pipeline
    if teacher == "tiny":
        from tongues.distill.tiny import tiny_clip_teacher, tiny_pipeline

        english = [en for en, _ in read_parallel(parallel)]
        teacher_dir = ctx.out_dir / "teacher"
        if not (teacher_dir / "config.json").is_file():
            tiny_clip_teacher(teacher_dir, english, seed=ctx.seed)
        if pipeline is None:
            pipeline = str(ctx.out_dir / "pipeline")
            if not (Path(pipeline) / "model_index.json").is_file():
                tiny_pipeline(Path(pipeline), teacher_dir, seed=ctx.seed)
        teacher = str(teacher_dir)
    job = EncoderJob(teacher=teacher, student=student, parallel=parallel, out=ctx.out_dir, steps=cfg.steps,
                     batch_size=cfg.batch_size, lr=cfg.lr, trunk_lr=cfg.trunk_lr, seed=ctx.seed)
    metrics = train_encoder(job, log=lambda m: print(f"  {m}", flush=True))
    from tongues.distill.encoder import retrieval_line

    metrics["headline"] = retrieval_line(metrics)
    if cfg.image_prompt and pipeline:
        from tongues.distill.imagine import imagine

        image = ctx.out_dir / "image.png"
        imagine(cfg.image_prompt, encoder=ctx.out_dir / "encoder", pipeline=pipeline, out=image,
                steps=cfg.image_steps, height=cfg.image_size, width=cfg.image_size, seed=ctx.seed)
        metrics["image"] = str(image)
        metrics["headline"] += f"; image {image}"
    if "r@1" in metrics:
        metrics["summary"] = [{"table": "Prompt encoders (held-out xx->en retrieval against the teacher)",
                               "columns": ["stage", "R@1", "R@10", "teacher on xx: R@1 / R@10", "image"],
                               "row": [ctx.stage.name, f"{metrics['r@1']:.3f}", f"{metrics['r@10']:.3f}",
                                       f"{metrics['teacher_on_xx_r@1']:.3f} / {metrics['teacher_on_xx_r@10']:.3f}",
                                       metrics.get("image", "–")]}]
    return metrics
__all__ = ["run_encoder_stage", "run_stage", "teacher_stage"]
