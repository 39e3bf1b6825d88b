"""Run our tasks in lm-evaluation-harness: export a task YAML + its documents for `--include_path`.

Used to check agreement (benchmarks/eval.py, the slow test): the exported task carries the same
documents (after our loader and field mapping) and the same Jinja prompt fields, so lm-eval's
`bits_per_byte` and `acc` are computed on exactly what `tongues eval` scores. Any exported model
runs in lm-eval with no tongues import:

    lm_eval --model hf --model_args pretrained=DIR,dtype=float32 --include_path TASKS_DIR \\
        --tasks tongues_ko_heldout_bpb,tongues_ko_mc --batch_size 8 --device cpu
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tongues.eval.registry import TaskSpec
from tongues.manifest import atomic_path

PREFIX = "tongues_"


def lm_eval_config(spec: TaskSpec, docs_file: Path, name: str | None = None) -> dict[str, Any]:
    """An lm-eval task config (a dict for YAML) reading `docs_file` (JSON lines) as its test split."""
    config: dict[str, Any] = {
        "task": name or PREFIX + spec.task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(docs_file).resolve())}},
        "test_split": "test",
        "metadata": {"version": float(spec.version)},
    }
    if spec.kind == "bits_per_byte":
        config.update(output_type="loglikelihood_rolling", doc_to_text="", doc_to_target=spec.doc_to_target,
                      metric_list=[{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")])
    elif spec.kind == "multiple_choice":
        config.update(output_type="multiple_choice", doc_to_text=spec.doc_to_text, doc_to_choice=spec.doc_to_choice,
                      doc_to_target=spec.doc_to_target, target_delimiter=spec.target_delimiter,
                      fewshot_delimiter=spec.fewshot_delimiter,
                      metric_list=[{"metric": m} for m in ("acc", "acc_norm", "acc_bytes")])
        if spec.description:
            config["description"] = spec.description
    else:
        raise ValueError(f"{spec.task}: only bits_per_byte and multiple_choice tasks are exported to lm-eval")
    return config


def export_task(spec: TaskSpec, docs: list[dict[str, Any]], out_dir: str | Path) -> str:
    """Write <out_dir>/tongues_<task>.yaml and .jsonl; returns the lm-eval task name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = PREFIX + spec.task
    docs_file = out / f"{name}.jsonl"
    with atomic_path(docs_file) as tmp:
        tmp.write_text("".join(json.dumps(d, ensure_ascii=False, default=str) + "\n" for d in docs), encoding="utf-8")
    with atomic_path(out / f"{name}.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(lm_eval_config(spec, docs_file, name), allow_unicode=True, sort_keys=False),
                       encoding="utf-8")
    return name
