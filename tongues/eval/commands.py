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
