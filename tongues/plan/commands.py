"""CLI: `tongues plan`, `tongues scaling fit` (and `tongues scaling sweep` when pretraining is there)."""

from __future__ import annotations

import argparse
import json
import sys

from tongues.errors import TonguesError
from tongues.plan.quantity import parse_quantity, whole

PLAN_EPILOG = """\
budget (exactly one):
  --flops C                       a compute budget in FLOPs (6·N·D, the laws' convention)
  --params N                      a model size; the law gives its compute-optimal tokens
  --gpus N --gpu TYPE --hours H   wall-clock on N accelerators at --mfu (attention FLOPs included)
  (--gpus/--gpu without --hours only set the hardware for the cost and memory tables)

numbers accept suffixes: 3e19, 1.2B, 300M, 20K, 1.5T.

--json prints one JSON object on stdout; its keys:
  params, tokens           N and D of the recommended run (the data-constrained optimum when
                           --unique-tokens is below the law's D, except that --params keeps N)
  flops                    the budget in the law's convention (6·N·D)
  tokens_per_param, epochs (null without --unique-tokens), predicted_loss, loss_unit
  law, law_description, law_source, param_count ("total" or "non_embedding", how N is counted)
  compute_optimal          N, D, loss of the unconstrained optimum under the law
  data_constrained         the Muennighoff et al. 2023 optimum, or null when data suffices
  other_laws               the same under every other published law
  shape                    layers, d_model, heads, kv heads, head_dim, FFN, vocab, tied, params
  shape_params             the shape's exact parameter count (counted as param_count)
  cost                     training FLOPs (with attention), tokens/s, wall-clock, GPU-hours
  memory                   per-device GiB for DDP and FSDP, with and without checkpointing,
                           and the largest micro-batch that fits
  training                 global batch, micro-batch, accumulation, lr, steps, warmup, source
  warnings, notes, headline

--out DIR writes plan.json (the same object), config.json (a Hugging Face LlamaConfig),
plan.md (the tables) and recipe.yaml (plan: and pretrain: keys for a recipe's model).

examples:
  tongues plan --flops 1e20 --unique-tokens 2B --vocab-size 32000
  tongues plan --gpus 8 --gpu h100 --hours 72 --unique-tokens 30B --out runs/plan-ko
  tongues plan --flops 1.92e19 --law chinchilla-approach1 --json
"""

FIT_EPILOG = """\
RUNS: a .jsonl file (one run per line), a .json file (a list of runs, or {"runs": [...]}), or a
directory holding runs.jsonl, or one run.json per subdirectory (what `tongues scaling sweep`
writes). Each run is an object with:
  params   total parameters, embeddings included (required)
  tokens   training tokens (required)
  loss     final validation loss in nats per token (required for --metric loss)
  bpb      final validation bits per UTF-8 byte (required for --metric bpb)
  flops    training FLOPs (optional; 6·params·tokens when absent); runs whose FLOPs agree within
           --budget-tolerance form one IsoFLOP group
  name, non_embedding_params   optional
bits per byte compare across tokenizers: bpb = loss / ln 2 × tokens / bytes of the same text.

Writes into --out: law.json (E, A, B, alpha, beta with bootstrap intervals, the allocation
exponents a and b, the IsoFLOP fit; `tongues plan --law fitted:DIR/law.json` reads it),
isoflops.png (loss against N per budget with the parabolas and their minima, and the fitted
frontier N_opt(C)) and fit.md.
"""

def register(commands) -> None:  # noqa: ANN001 (tongues.cli.Commands)
    p = commands.add(
        "plan",
        "size a model for a compute budget and your data (Chinchilla and data-constrained scaling laws)",
        _handle_plan,
        description="Size a model for a compute budget and the team's unique tokens: N, D, epochs, predicted "
        "loss under every published law, a Llama shape, cost, memory per device, batch size and learning rate.",
    )
    p.epilog = PLAN_EPILOG
    p.add_argument("--flops", help="compute budget in FLOPs (e.g. 1e20)")
    p.add_argument("--params", help="model size in parameters (e.g. 1.2B); the law gives the tokens")
    p.add_argument("--gpus", help="number of accelerators (with --gpu; with --hours it is the budget)")
    p.add_argument("--gpu", help="accelerator type: a100, h100, h200, l40s, l4, a10, rtx4090, mi300x, tpu-v5p, ...")
    p.add_argument("--hours", help="wall-clock hours on --gpus × --gpu (the budget)")
    p.add_argument("--mfu", default="0.4", help="model FLOPs utilization assumed for the wall-clock")
    p.add_argument("--unique-tokens", help="unique tokens in your corpus, in your tokenizer's tokens (e.g. 3B)")
    p.add_argument("--vocab-size", default="32000", help="vocabulary size of your tokenizer")
    p.add_argument("--seq-len", default="2048", help="training sequence length")
    p.add_argument("--law", default="chinchilla",
                   help="chinchilla (approach 3) | chinchilla-approach1 | chinchilla-approach2 | epoch2024 | "
                        "muennighoff2023 | fitted:PATH (from `tongues scaling fit`)")
    p.add_argument("--out", metavar="DIR", help="write plan.json, config.json, plan.md and recipe.yaml here")
    p.add_argument("--json", action="store_true", help="print the plan as JSON on stdout (keys below)")

    f = commands.add(
        "scaling fit",
        "fit L(N,D) = E + A/N^alpha + B/D^beta and IsoFLOP parabolas to a sweep of runs",
        _handle_fit,
        description="Fit your language's own scaling law: Chinchilla approach 3 (Huber loss on log-loss, "
        "L-BFGS from a grid of starts) with bootstrap intervals, and approach 2 (IsoFLOP parabolas).",
    )
    f.epilog = FIT_EPILOG
    f.add_argument("runs", help="runs file (.jsonl / .json) or sweep directory")
    f.add_argument("--out", metavar="DIR", default=None, help="output directory (default: beside RUNS, 'fit/')")
    f.add_argument("--metric", choices=("loss", "bpb"), default="loss",
                   help="fit nats per token (loss) or bits per UTF-8 byte (bpb, comparable across tokenizers)")
    f.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the confidence intervals")
    f.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    f.add_argument("--budget-tolerance", type=float, default=0.1,
                   help="runs whose FLOPs differ by less than this fraction share an IsoFLOP group")
    f.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    f.add_argument("--name", default=None, help="name of the fitted law (default: the RUNS file or directory name)")
    f.add_argument("--json", action="store_true", help="print the fitted law as JSON on stdout")


def _handle_plan(args: argparse.Namespace) -> int:
    from tongues.plan.planner import plan, write_plan

    mfu = parse_quantity(args.mfu, "--mfu")
    result = plan(
        flops=parse_quantity(args.flops, "--flops"),
        params=parse_quantity(args.params, "--params"),
        gpus=whole(args.gpus, "--gpus"),
        gpu=args.gpu,
        hours=parse_quantity(args.hours, "--hours"),
        mfu=mfu if mfu is not None else 0.4,
        unique_tokens=parse_quantity(args.unique_tokens, "--unique-tokens"),
        vocab_size=whole(args.vocab_size, "--vocab-size") or 32000,
        seq_len=whole(args.seq_len, "--seq-len") or 2048,
        law=args.law,
    )
    if args.out:
        paths = write_plan(result, args.out)
        if not args.json:
            print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(result.to_markdown())
    return 0


def _handle_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tongues.plan.fit import fit_runs, load_runs, write_fit

    runs = load_runs(args.runs)
    if args.bootstrap < 0:
        raise TonguesError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not 0 < args.confidence < 1:
        raise TonguesError(f"--confidence must be between 0 and 1, got {args.confidence}")
    source = Path(args.runs)
    name = args.name or (source.stem if source.is_file() else source.name) or "fitted"
    fit = fit_runs(runs, metric=args.metric, bootstrap=args.bootstrap, confidence=args.confidence,
                   budget_tolerance=args.budget_tolerance, seed=args.seed, name=name)
    out = Path(args.out) if args.out else (source.parent if source.is_file() else source) / "fit"
    paths = write_fit(fit, out)
    if args.json:
        print(json.dumps(fit.law_json(), indent=2, ensure_ascii=False))
    else:
        print(fit.to_markdown())
        print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
