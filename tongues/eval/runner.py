"""Evaluate models on tasks: load documents once, score each model, compare models pairwise.

`evaluate_models` is what `tongues eval` and the eval stage call. Each (model, task) result is
cached under `<out>/cache/` keyed by the model's hash, the task's version and the settings, so an
interrupted run resumes where it stopped and a re-run with one more model scores only that one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any

from tongues.errors import DataError, TonguesError
from tongues.eval.config import EvalConfig
from tongues.eval.documents import load_split
from tongues.eval.registry import HEADLINE, TaskSpec, describe, resolve_tasks
from tongues.eval.significance import bootstrap_ci, paired_bootstrap
from tongues.eval.task_kinds import TaskInput, TaskOutcome, run_task
from tongues.manifest import package_versions, sha256_file, sha256_json, write_json

Log = Callable[[str], None]


@dataclass
class ModelInfo:
    name: str
    path: str
    sha256: str | None  # of model.safetensors (sha256 of the per-shard hashes when sharded)
    tokenizer_sha256: str | None
    parameters: int | None = None
    languages: list[str] = field(default_factory=list)


def model_hash(directory: Path) -> str | None:
    """sha256 of model.safetensors; for sharded weights, of the JSON of each shard's sha256."""
    single = directory / "model.safetensors"
    if single.is_file():
        return sha256_file(single)
    shards = sorted(directory.glob("model-*.safetensors"))
    return sha256_json({p.name: sha256_file(p) for p in shards}) if shards else None


def model_directory(path: str | Path) -> Path:
    """The model directory: `path`, or `path/model` for a pretraining stage's output directory."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        return path / "model"
    return path


def model_info(path: str | Path, name: str | None = None) -> ModelInfo:
    """What results.json records about a model directory (no weights loaded)."""
    directory = model_directory(path)
    if not (directory / "config.json").is_file():
        raise TonguesError(f"--model {directory}: not a Hugging Face model directory (no config.json)")
    tokenizer = directory / "tokenizer.json"
    languages: list[str] = []
    meta = directory / "tongues_tokenizer.json"
    if meta.is_file():
        languages = list(json.loads(meta.read_text(encoding="utf-8")).get("languages", []))
    return ModelInfo(name or directory.name, str(directory), model_hash(directory),
                     sha256_file(tokenizer) if tokenizer.is_file() else None, parameter_count(directory), languages)


def parameter_count(directory: Path) -> int | None:
    """Number of stored parameters, read from the safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    files = sorted(directory.glob("model*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def model_names(paths: list[str | Path]) -> list[str]:
    """Short unique labels: the directory name (its parent's for `.../pretrain-ko/model`); names
    that collide get their parent folder, then a number."""
    paths = [Path(p) for p in paths]
    names = [p.parent.name if p.name == "model" else p.name for p in paths]
    names = [f"{p.parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def task_inputs(specs: list[TaskSpec], config: EvalConfig, log: Log = print) -> list[TaskInput]:
    """Each task's documents (eval split, limited) and few-shot pool, loaded once for all models."""
    inputs = []
    for spec in specs:
        split = config.split or spec.data.eval_split
        every = load_split(spec, split, config.data_dir)
        docs = every[: config.limit] if config.limit else every
        shots = config.num_fewshot if spec.kind in ("multiple_choice", "generation") else 0
        # Examples come from the few-shot split, else from the whole eval split (never the item
        # itself), so --limit does not change which examples an item gets.
        own = bool(shots and spec.data.fewshot_split and spec.data.fewshot_split != split)
        pool = load_split(spec, spec.data.fewshot_split, config.data_dir) if own else every
        inputs.append(TaskInput(spec, docs, pool, shots, not own, config.seed, config.stride, config.data_dir))
        log(f"task {spec.task} v{spec.version} ({spec.language}, {spec.kind}): {len(docs)} items from split {split}"
            + (f", {shots}-shot" if shots else ""))
    return inputs


@dataclass
class EvalRun:
    """Everything one evaluation produced; `to_json()` is results.json."""

    models: list[ModelInfo]
    tasks: list[TaskInput]
    outcomes: dict[str, dict[str, TaskOutcome]]  # model name -> task -> outcome
    config: EvalConfig
    seconds: float = 0.0
    intervals: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def metric(self, model: str, task: str, name: str | None = None) -> float | None:
        outcome = self.outcomes[model][task]
        return outcome.metrics.get(name or HEADLINE[self._spec(task).kind][0])

    def _spec(self, task: str) -> TaskSpec:
        return next(t.spec for t in self.tasks if t.spec.task == task)

    def to_json(self) -> dict[str, Any]:
        return {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(),
            "config": self.config.model_dump(mode="json"),
            "seconds": round(self.seconds, 3),
            "models": {m.name: vars(m) for m in self.models},
            "tasks": {t.spec.task: {**describe(t.spec), "n_items": len(t.docs), "num_fewshot": t.num_fewshot,
                                    "seed": self.config.seed, "split": self.config.split or t.spec.data.eval_split,
                                    "headline": t.spec.headline}
                      for t in self.tasks},
            "results": {m: {t: {"metrics": o.metrics, "ci95": self.intervals.get(m, {}).get(t, {}),
                                "n_items": o.n_items, "tokens_scored": o.tokens_scored}
                            for t, o in per_task.items()}
                        for m, per_task in self.outcomes.items()},
            "comparisons": self.comparisons,
        }


def evaluate_models(
    model_dirs: list[str | Path],
    config: EvalConfig,
    out_dir: str | Path | None = None,
    *,
    include: list[str | Path] | None = None,
    names: list[str] | None = None,
    progress: bool = True,
    log: Log = print,
) -> EvalRun:
    """Evaluate every model on every task of `config.tasks`; write the report to `out_dir`.

    Returns the EvalRun (metrics, 95% bootstrap intervals, paired comparisons between models).
    """
    from tongues.eval.scoring import Scorer

    if not model_dirs:
        raise TonguesError("no model to evaluate: pass --model DIR (repeatable)")
    start = time.perf_counter()
    specs = resolve_tasks(config.tasks, include)
    tasks = task_inputs(specs, config, log)
    model_dirs = [model_directory(p) for p in model_dirs]
    names = names or model_names(model_dirs)
    infos = [model_info(p, n) for p, n in zip(model_dirs, names, strict=True)]
    cache = Path(out_dir) / "cache" if out_dir else None
    outcomes: dict[str, dict[str, TaskOutcome]] = {}
    for info in infos:
        outcomes[info.name] = {}
        scorer = None
        for task in tasks:
            key = _cache_key(info, task, config)
            cached = _read_cache(cache, info.name, task.spec.task, key)
            if cached is not None:
                outcomes[info.name][task.spec.task] = cached
                log(f"{info.name} / {task.spec.task}: cached")
                continue
            if scorer is None and task.spec.kind != "tokenizer_parity":
                scorer = Scorer.load(info.path, device=config.device, dtype=config.dtype,
                                     batch_size=config.batch_size, max_length=config.max_length, progress=progress)
            began = time.perf_counter()
            outcome = run_task(task, scorer, Path(info.path))
            outcomes[info.name][task.spec.task] = outcome
            _write_cache(cache, info.name, task.spec.task, key, outcome)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in outcome.metrics.items() if isinstance(v, float))
            log(f"{info.name} / {task.spec.task}: {shown} ({time.perf_counter() - began:.1f}s)")
        del scorer
    run = EvalRun(infos, tasks, outcomes, config)
    run.intervals = intervals(run)
    run.comparisons = compare(run)
    run.seconds = time.perf_counter() - start
    if out_dir:
        from tongues.eval.report import write_report

        write_report(run, out_dir)
    return run


def intervals(run: EvalRun) -> dict[str, dict[str, dict[str, list[float]]]]:
    """95% bootstrap interval of every per-item metric, per model and task."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for model, per_task in run.outcomes.items():
        for task, outcome in per_task.items():
            out.setdefault(model, {})[task] = {
                name: list(bootstrap_ci(items, run.config.bootstrap, run.config.seed)) for name, items in outcome.items.items()
            }
    return out


def compare(run: EvalRun) -> list[dict[str, Any]]:
    """Paired bootstrap of every pair of models on every task's per-item metrics (same items)."""
    rows = []
    for task in run.tasks:
        name = task.spec.task
        for a, b in combinations([m.name for m in run.models], 2):
            oa, ob = run.outcomes[a][name], run.outcomes[b][name]
            for metric in oa.items:
                if metric not in ob.items or len(oa.items[metric]) != len(ob.items[metric]):
                    continue
                result = paired_bootstrap(oa.items[metric], ob.items[metric], run.config.bootstrap, run.config.seed)
                higher_better = metric != "bits_per_byte"
                better = a if (result.difference > 0) == higher_better else b
                rows.append({"task": name, "metric": metric, "a": a, "b": b, **result.to_dict(),
                             "better": better if result.significant else None})
    return rows


def _cache_key(info: ModelInfo, task: TaskInput, config: EvalConfig) -> str:
    return sha256_json({
        "model": info.sha256 or info.path, "tokenizer": info.tokenizer_sha256, "task": task.spec.task,
        "version": task.spec.version, "n": len(task.docs), "fewshot": task.num_fewshot, "seed": config.seed,
        "stride": config.stride, "max_length": config.max_length, "split": config.split, "dtype": config.dtype,
        "docs": sha256_json(task.docs), "pool": sha256_json(task.pool) if task.num_fewshot else None,
    })


def _cache_file(cache: Path, model: str, task: str) -> Path:
    return cache / model.replace("/", "__") / f"{task}.json"


def _read_cache(cache: Path | None, model: str, task: str, key: str) -> TaskOutcome | None:
    if cache is None:
        return None
    path = _cache_file(cache, model, task)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("key") != key:
        return None
    try:
        return TaskOutcome.from_dict(data["outcome"])
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: unreadable cached result ({err}); delete it to re-run") from None


def _write_cache(cache: Path | None, model: str, task: str, key: str, outcome: TaskOutcome) -> None:
    if cache is not None:
        write_json(_cache_file(cache, model, task), {"key": key, "outcome": outcome.to_dict()})
