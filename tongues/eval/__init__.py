"""The evaluation harness: tasks as YAML data, fair cross-language metrics, significance, reports.

- `tongues.eval.registry`: task files (tongues/eval/tasks/<family>/<task>.yaml), `resolve_tasks`.
- `tongues.eval.documents`: embedded, local (--data-dir) and Hub documents.
- `tongues.eval.scoring`: `Scorer` - log-likelihoods, rolling bits per byte, greedy generation,
  with lm-evaluation-harness's conventions.
- `tongues.eval.task_kinds`: bits_per_byte, multiple_choice, generation, tokenizer_parity.
- `tongues.eval.significance`: bootstrap intervals, paired bootstrap between models.
- `tongues.eval.runner`: `evaluate_models` (what `tongues eval` runs); `tongues.eval.report`.
- `tongues.eval.stage`: `run_stage` for the recipe's `eval-<model>` stages.
- `tongues.eval.harness`: export a task for lm-evaluation-harness (`--include_path`).
"""
