"""`tongues eval`: evaluate one or more models on tasks, compare them, write a report."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Evaluate Hugging Face causal LM directories on tasks declared as YAML files (tongues/eval/tasks):
bits per UTF-8 byte on held-out text (comparable across tokenizers), multiple choice by
log-likelihood (acc, acc_norm), generation (exact match, chrF), tokenizer parity. With several
--model, a paired bootstrap marks which differences are significant.

examples:
  tongues eval --model runs/demo/pretrain-ko/model --tasks ko_heldout_bpb,ko_mc,ko_gen
  tongues eval --model A --model B --tasks kobest --data-dir /data/tasks --split validation
  tongues eval --list-tasks
"""


EXPORT_DESCRIPTION = """\
Write tongues tasks as lm-evaluation-harness tasks: for each, tongues_<task>.yaml and the
documents tongues scores (tongues_<task>.jsonl), so lm_eval computes bits_per_byte / acc on exactly
the same items, with no tongues import:

  tongues eval export-harness --tasks ko_heldout_bpb,ko_mc --out harness_tasks
  lm_eval --model hf --model_args pretrained=runs/demo/pretrain-ko/model,dtype=float32 \\
      --include_path harness_tasks --tasks tongues_ko_heldout_bpb,tongues_ko_mc --device cpu --batch_size 8
(lm_eval comes with the `harness` extra: pip install "tongues[harness]".)
"""


def _handle_export_harness(args: argparse.Namespace) -> int:
    from tongues.errors import ConfigError
    from tongues.eval.documents import load_split
    from tongues.eval.harness import export_task
    from tongues.eval.registry import resolve_tasks

    specs = resolve_tasks([t for t in ",".join(args.tasks).split(",") if t.strip()], args.include_path)
    unsupported = [s.task for s in specs if s.kind not in ("bits_per_byte", "multiple_choice")]
    if unsupported:
        raise ConfigError(f"export-harness: {', '.join(unsupported)} cannot be exported (only bits_per_byte and "
                          "multiple_choice tasks map onto lm-eval task types)")
    names = []
    for spec in specs:
        docs = load_split(spec, args.split or spec.data.eval_split, args.data_dir)
        names.append(export_task(spec, docs, args.out))
        print(f"{names[-1]}: {len(docs)} documents -> {args.out}/{names[-1]}.yaml")
    print(f"run: lm_eval --model hf --model_args pretrained=MODEL_DIR,dtype=float32 --include_path {args.out} "
          f"--tasks {','.join(names)} --device cpu --batch_size 8")
    return 0


def register(commands: Any) -> None:
    p = commands.add("eval", "evaluate models on native-language tasks; bits per byte, accuracy, significance",
                     _handle_eval, description=DESCRIPTION)
    p.add_argument("--model", action="append", default=[], metavar="DIR",
                   help="a Hugging Face causal LM directory (repeatable: models are compared pairwise)")
    p.add_argument("--tasks", action="append", default=[], metavar="LIST",
                   help="comma-separated task names, families (kobest) or globs (ko_*), repeatable; "
                        "none: the embedded tasks of the models' languages")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate at most N items per task")
    p.add_argument("--batch-size", default="auto", metavar="N|auto",
                   help="sequences per forward pass, or auto (packed under a token budget)")
    p.add_argument("--num-fewshot", type=int, default=0, metavar="K",
                   help="solved examples before each item (multiple choice, generation), drawn with --seed")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write results.json, results.md, plots and samples here; none: print the table only")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where task files find their local data; none: $TONGUES_EVAL_DATA, else the Hub")
    p.add_argument("--split", default=None, help="evaluate this split instead of each task's own (e.g. validation)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="a directory of extra task YAML files (repeatable)")
    p.add_argument("--seed", type=int, default=1234, help="seed of few-shot sampling and bootstrap resampling")
    p.add_argument("--stride", type=int, default=None,
                   help="rolling-window stride in tokens for bits per byte; none: the window, as lm-eval")
    p.add_argument("--max-length", type=int, default=None, help="window in tokens; none: the model's context")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for intervals and paired tests")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps; none: cuda when available")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"],
                   help="weights' dtype for evaluation")
    p.add_argument("--list-tasks", action="store_true", help="list the known tasks and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    sub = p.add_subparsers(dest="eval_command", metavar="COMMAND", required=False)
    h = sub.add_parser("export-harness", help="write tasks as lm-evaluation-harness task folders (YAML + documents)",
                       description=EXPORT_DESCRIPTION, formatter_class=p.formatter_class)
    h.set_defaults(handler=_handle_export_harness)
    h.add_argument("--tasks", action="append", default=[], metavar="LIST", required=True,
                   help="comma-separated bits_per_byte / multiple_choice tasks, families or globs, repeatable")
    h.add_argument("--out", required=True, metavar="DIR", help="task folder for lm_eval --include_path")
    h.add_argument("--split", default=None, help="export this split instead of each task's own")
    h.add_argument("--data-dir", default=None, metavar="DIR", help="where task files find their local data")
    h.add_argument("--include-path", action="append", default=[], metavar="DIR", help="extra task YAML files")


def _handle_eval(args: argparse.Namespace) -> int:
    from tongues.config import validate
    from tongues.errors import ConfigError
    from tongues.eval.config import EvalConfig
    from tongues.eval.registry import embedded_tasks, load_task_file, task_files

    if args.list_tasks:
        for name, path in task_files(args.include_path).items():
            spec = load_task_file(path)
            print(f"{name:32s} {spec.language}  {spec.kind:17s} v{spec.version}  {spec.summary}")
        return 0
    if not args.model:
        raise ConfigError("tongues eval: pass --model DIR (repeatable), or --list-tasks")
    batch_size: int | str = args.batch_size
    if batch_size != "auto":
        try:
            batch_size = int(batch_size)
        except ValueError:
            raise ConfigError(f"--batch-size: expected a positive integer or 'auto', got {args.batch_size!r}") from None
    tasks = [t for t in ",".join(args.tasks).split(",") if t.strip()]
    if not tasks:
        from tongues.eval.runner import model_info

        langs = sorted({lang for m in args.model for lang in model_info(m).languages})
        tasks = embedded_tasks(langs)
        if not tasks:
            raise ConfigError("no --tasks given and the models' languages are unknown "
                              "(no tongues_tokenizer.json): pass --tasks, e.g. --tasks ko_heldout_bpb,ko_mc")
    config = validate(EvalConfig, {
        "tasks": tasks, "limit": args.limit, "num_fewshot": args.num_fewshot, "batch_size": batch_size,
        "stride": args.stride, "max_length": args.max_length, "data_dir": args.data_dir, "split": args.split,
        "seed": args.seed, "bootstrap": args.bootstrap, "device": args.device, "dtype": args.dtype,
    }, source="tongues eval")
    from tongues.eval.report import markdown
    from tongues.eval.runner import evaluate_models

    run = evaluate_models(args.model, config, args.out, include=args.include_path, progress=not args.quiet)
    print()
    print(markdown(run))
    if args.out:
        print(f"wrote {args.out}/results.json, results.md and plots")
    return 0
