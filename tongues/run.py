"""The recipe runner: turns a recipe into stages, runs them in order, skips what is done.

Each stage is a plain function ``run_stage(ctx: StageContext) -> dict`` (its metrics) that
writes its artifacts into ``ctx.out_dir``. The runner writes ``manifest.json`` there: first with
``status: running`` and the stage's fingerprint, then ``status: complete`` with metrics and wall
time. On the next run a stage whose complete manifest has the same fingerprint is skipped; one
left ``running`` (Ctrl-C, a crash) with the same fingerprint is resumed in place; one whose
fingerprint changed is started afresh.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tongues.config import Recipe
from tongues.data.config import EMBEDDED_PREFIX, HUB_PREFIX, CorpusConfig
from tongues.manifest import MANIFEST, package_versions, read_manifest, sha256_file, sha256_json, write_json


@dataclass
class Stage:
    name: str  # directory name under the run directory, e.g. "data-ko"
    kind: str  # "data", "tokenizer", ...
    entry: str  # "module:function" taking a StageContext, returning metrics
    config: BaseModel | None  # None: the stage has no settings of its own (only its inputs)
    inputs: list[str] = field(default_factory=list)  # names of upstream stages
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific settings (JSON-able)


@dataclass
class StageContext:
    stage: Stage
    recipe: Recipe
    out_dir: Path
    inputs: dict[str, Path]  # upstream stage name -> its artifact directory
    seed: int
    resuming: bool = False

    @property
    def config(self) -> Any:
        return self.stage.config

    def input_of_kind(self, kind: str) -> dict[str, Path]:
        """Upstream directories whose stage name starts with `kind-` (e.g. all `data-*`)."""
        return {n: p for n, p in self.inputs.items() if n.startswith(f"{kind}-")}


@dataclass
class StageResult:
    name: str
    status: str  # ran | resumed | skipped
    seconds: float
    out_dir: Path
    metrics: dict[str, Any]


def build_stages(recipe: Recipe) -> list[Stage]:
    """The recipe's stages in dependency order."""
    stages = [
        Stage(f"data-{name}", "data", "tongues.data.prepare:run_stage", corpus, extra={"corpus": name})
        for name, corpus in recipe.corpora.items()
    ]
    for name, tok in recipe.tokenizers.items():
        stages.append(
            Stage(
                f"tokenizer-{name}", "tokenizer", "tongues.tokenizers.train:run_stage", tok,
                inputs=[f"data-{c}" for c in tok.corpora], extra={"tokenizer": name},
            )
        )
    for name, model in recipe.models.items():
        tok = f"tokenizer-{model.tokenizer}"
        stages.append(
            Stage(
                f"tokenize-{name}", "tokenize", "tongues.data.tokenize:run_stage", None,
                inputs=[tok, *(f"data-{c}" for c in model.corpora)],
                extra={"model": name, "corpora": sorted(model.corpora)},
            )
        )
        pretrain_inputs = [f"tokenize-{name}", tok]
        if model.plan is not None:
            stages.append(
                Stage(
                    f"plan-{name}", "plan", "tongues.plan.planner:run_stage", model.plan,
                    inputs=[f"tokenize-{name}", tok], extra={"model": name, "seq_len": model.pretrain.seq_len},
                )
            )
            pretrain_inputs.append(f"plan-{name}")
        stages.append(
            Stage(
                f"pretrain-{name}", "pretrain", "tongues.lm.pretrain:run_stage", model.pretrain,
                inputs=pretrain_inputs,
                extra={"model": name, "corpora": model.corpora, "tokenizer": model.tokenizer,
                       "sample_prompts": model.sample_prompts},
            )
        )
        if model.eval is not None:
            stages.append(
                Stage(f"eval-{name}", "eval", "tongues.eval.stage:run_stage", model.eval,
                      inputs=[f"pretrain-{name}"], extra={"model": name})
            )
        stages += instruct_stages(name, model)
    stages += distill_stages(recipe, {s.name for s in stages})
    stages += gguf_stages(recipe, {s.name for s in stages})
    for name, enc in recipe.encoders.items():
        student = f"pretrain-{enc.student}" if enc.student in recipe.models else None
        stages.append(Stage(f"encoder-{name}", "encoder", "tongues.distill.stage:run_encoder_stage", enc,
                            inputs=[student] if student else [], extra={"student_input": student}))
    return stages


def gguf_stages(recipe: Recipe, known: set[str]) -> list[Stage]:
    """`gguf-<name>` for every `gguf:` entry: a student's model, or a recipe model's (last) stage's."""
    from tongues.distill.stage import teacher_stage

    stages = []
    for name, cfg in recipe.gguf.items():
        if name in recipe.students:
            source, subdir = f"distill-{name}", "student/model"
        else:
            source, subdir = teacher_stage(recipe, name), "model"
        if source not in known:
            from tongues.errors import ConfigError

            raise ConfigError(f"gguf.{name}: names stage {source}, which the recipe does not have")
        stages.append(Stage(f"gguf-{name.replace(':', '-')}", "gguf", "tongues.lm.gguf_export:run_stage", cfg,
                            inputs=[source], extra={"source_input": source, "model_subdir": subdir}))
    return stages


def distill_stages(recipe: Recipe, known: set[str]) -> list[Stage]:
    """`distill-<name>` for every student, after its teacher's stage (and its tokenized corpora)."""
    from tongues.distill.stage import teacher_stage

    stages = []
    for name, student in recipe.students.items():
        teacher = teacher_stage(recipe, student.teacher)
        if teacher is not None and teacher not in known:
            from tongues.errors import ConfigError

            raise ConfigError(f"students.{name}.teacher: {student.teacher!r} names stage {teacher}, which the "
                              f"recipe does not have")
        model = student.teacher.split(":", 1)[0]
        tokens = f"tokenize-{model}" if teacher is not None and not student.data else None
        inputs = [s for s in (teacher, tokens) if s]
        stages.append(Stage(f"distill-{name}", "distill", "tongues.distill.stage:run_stage", student, inputs=inputs,
                            extra={"teacher_input": teacher, "tokens_input": tokens}))
    return stages


def instruct_stages(name: str, model: Any) -> list[Stage]:
    """sft -> reward -> dpo -> grpo of a model (those its recipe names), after its pretraining."""
    cfg = model.instruct
    if cfg is None:
        return []
    stages: list[Stage] = []
    chat = f"pretrain-{name}"  # the latest chat-stage model: each chat stage starts from it
    reward = None
    for method in ("sft", "reward", "dpo", "grpo"):
        settings = getattr(cfg, method)
        if settings is None:
            continue
        stage = f"{method}-{name}"
        inputs = [chat] + ([reward] if reward and method in ("dpo", "grpo") else [])
        stages.append(Stage(stage, method, "tongues.instruct.stage:run_stage", settings, inputs=inputs,
                            extra={"method": method, "model": name, "base_input": chat,
                                   "reward_input": reward if method in ("dpo", "grpo") else None}))
        if method == "reward":
            reward = stage
        else:
            chat = stage
    return stages


def stage_fingerprint(stage: Stage, recipe: Recipe, upstream: dict[str, dict[str, Any]]) -> str:
    """What the stage's output depends on: its kind, config, seed, inputs' fingerprints, sources."""
    payload = {
        "kind": stage.kind,
        "config": stage.config.model_dump(mode="json") if stage.config is not None else None,
        "extra": stage.extra,
        "seed": recipe.seed,
        # An upstream stage that ran again (forced, or changed) makes its dependents run again.
        "inputs": {name: [upstream[name].get("fingerprint"), upstream[name].get("run_id")] for name in stage.inputs},
    }
    if isinstance(stage.config, CorpusConfig):
        payload["sources"] = source_hashes(stage.config.sources)
    return sha256_json(payload)


def source_hashes(sources: list[str]) -> dict[str, str]:
    """sha256 of every local source file (files under a directory included); hub names as given."""
    from tongues.resources import embedded_corpus_path

    hashes: dict[str, str] = {}
    for src in sources:
        if src.startswith(HUB_PREFIX):
            hashes[src] = src
        elif src.startswith(EMBEDDED_PREFIX):
            hashes[src] = sha256_file(embedded_corpus_path(src[len(EMBEDDED_PREFIX) :]))
        else:
            path = Path(src)
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            hashes[src] = sha256_json({str(p): sha256_file(p) for p in files})
    return hashes


def resolve(entry: str) -> Callable[[StageContext], dict[str, Any]]:
    module, _, func = entry.partition(":")
    return getattr(importlib.import_module(module), func)


def run_recipe(
    recipe: Recipe,
    only: list[str] | None = None,
    force: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[StageResult]:
    """Run the recipe's stages in order; returns what happened to each. Ctrl-C propagates."""
    stages = build_stages(recipe)
    names = [s.name for s in stages]
    for wanted in (only or []) + [f for f in (force or []) if f != "all"]:
        if wanted not in names:
            from tongues.errors import ConfigError

            raise ConfigError(f"unknown stage {wanted!r} (stages of {recipe.name}: {', '.join(names)})")
    forced = set(names) if "all" in (force or []) else set(force or [])
    needed = _upstream_of(stages, set(only or []))
    run_dir = recipe.run_dir
    manifests: dict[str, dict[str, Any]] = {}
    results: list[StageResult] = []
    for index, stage in enumerate(stages, 1):
        out_dir = run_dir / stage.name
        fingerprint = stage_fingerprint(stage, recipe, manifests)
        stored = read_manifest(out_dir)
        header = f"[{index}/{len(stages)}] {stage.name}"
        if only and stage.name not in only:
            if stage.name not in needed:
                continue  # neither selected nor upstream of a selected stage
            if not (stored and stored.get("status") == "complete"):
                from tongues.errors import ConfigError

                raise ConfigError(f"stage {stage.name} must run before {', '.join(only)}: run without --only")
            manifests[stage.name] = stored
            continue
        if (
            stored
            and stored.get("status") == "complete"
            and stored.get("fingerprint") == fingerprint
            and stage.name not in forced
        ):
            log(f"{header}: up to date, skipped ({out_dir})")
            manifests[stage.name] = stored
            results.append(StageResult(stage.name, "skipped", 0.0, out_dir, stored.get("metrics", {})))
            continue
        resuming = bool(
            stored and stored.get("status") == "running" and stored.get("fingerprint") == fingerprint
            and stage.name not in forced
        )
        if out_dir.exists() and not resuming:
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        log(f"{header}: {'resuming' if resuming else 'running'} {stage.kind} stage -> {out_dir}")
        manifest: dict[str, Any] = {
            "stage": stage.name,
            "kind": stage.kind,
            "status": "running",
            "fingerprint": fingerprint,
            "config": stage.config.model_dump(mode="json") if stage.config is not None else None,
            "extra": stage.extra,
            "seed": recipe.seed,
            "inputs": {n: {"dir": str(run_dir / n), "fingerprint": manifests[n].get("fingerprint")} for n in stage.inputs},
            "versions": package_versions(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if isinstance(stage.config, CorpusConfig):
            manifest["sources"] = source_hashes(stage.config.sources)
        write_json(out_dir / MANIFEST, manifest)
        ctx = StageContext(stage, recipe, out_dir, {n: run_dir / n for n in stage.inputs}, recipe.seed, resuming)
        start = time.perf_counter()
        metrics = resolve(stage.entry)(ctx) or {}
        seconds = time.perf_counter() - start
        manifest.update(
            status="complete",
            run_id=uuid.uuid4().hex,
            metrics=metrics,
            wall_time_s=round(seconds, 3),
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        write_json(out_dir / MANIFEST, manifest)
        manifests[stage.name] = manifest
        results.append(StageResult(stage.name, "resumed" if resuming else "ran", seconds, out_dir, metrics))
    return results


def _upstream_of(stages: list[Stage], selected: set[str]) -> set[str]:
    """Every stage some selected stage depends on, directly or not."""
    inputs = {s.name: s.inputs for s in stages}
    needed: set[str] = set()
    todo = [i for name in selected for i in inputs.get(name, [])]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(inputs.get(name, []))
    return needed


def summary_table(results: list[StageResult]) -> str:
    """A Markdown table: stage, what happened, wall time, where the artifacts are, a headline metric."""
    rows = ["| stage | status | time | artifacts | headline |", "|---|---|---|---|---|"]
    for r in results:
        headline = r.metrics.get("headline", "")
        rows.append(f"| {r.name} | {r.status} | {r.seconds:.1f}s | {r.out_dir} | {headline} |")
    return "\n".join(rows)


def main_run(recipe_path: str, overrides: list[str], only: list[str], force: list[str]) -> int:
    """`tongues run`: run a recipe, print a summary; Ctrl-C leaves a resumable state."""
    from tongues.config import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    print(f"recipe {recipe_path} -> {recipe.run_dir}", flush=True)
    try:
        results = run_recipe(recipe, only=only, force=force)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    print()
    print(summary_table(results))
    for title, table in summary_sections(results).items():
        print(f"\n{title}:\n{table}")
    samples = sample_lines(results)
    if samples:
        print("\nSample generations (greedy, then sampled):")
        print("\n".join(samples))
    return 0


def summary_sections(results: list[StageResult]) -> dict[str, str]:
    """Markdown tables that stages contribute rows to: a stage's metrics may hold
    "summary": [{"table": TITLE, "columns": [...], "row": [...]}, ...]; rows of one title are joined."""
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    for r in results:
        for part in r.metrics.get("summary", []) or []:
            columns, rows = tables.setdefault(part["table"], (list(part["columns"]), []))
            rows.append([str(v) for v in part["row"]])
    return {title: "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                               *("| " + " | ".join(row) + " |" for row in rows)])
            for title, (columns, rows) in tables.items()}


def sample_lines(results: list[StageResult]) -> list[str]:
    """`[stage] prompt → completion` for every sample a stage reported (pretraining does)."""
    lines = []
    def shown(raw: str) -> str:
        return " ".join(raw.split()) or ("(only whitespace)" if raw else "(nothing: end of text at once)")

    for r in results:
        for sample in r.metrics.get("samples", []) or []:
            lines.append(f"  [{r.name}] {sample.get('prompt', '')} → {shown(str(sample.get('completion', '')))}")
            if "sampled" in sample:
                lines.append(f"  {' ' * (len(r.name) + 2)} sampled ({sample.get('sampling', '')}) → "
                             f"{shown(str(sample['sampled']))}")
    return lines
