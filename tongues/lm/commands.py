"""CLI: `tongues data tokenize`, `tongues pretrain`, `tongues export`, `tongues launch slurm`,
`tongues scaling sweep`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tongues.errors import ConfigError

PRETRAIN_HELP = """\
Two ways to run it:

  recipe:  tongues pretrain --recipe recipes/demo.yaml --model ko [--set models.ko.pretrain.lr=1e-3]
           runs the model's upstream stages (data, tokenizer, plan, tokenize) if needed, then
           pretraining, in the recipe's run directory, exactly as `tongues run` would.
  direct:  tongues pretrain --data TOKENS_DIR[=WEIGHT] ... --tokenizer TOK --out DIR [--set max_steps=200]
           trains on token directories made by `tongues data tokenize` (a tokenize-<model> stage
           directory expands to its corpora); --set keys are PretrainConfig keys
           (e.g. model.hidden_size=128, global_batch_tokens=16384, schedule=wsd).

Several processes: the same command under a launcher. Supported launch lines:
  torchrun --nproc_per_node 2 -m tongues pretrain ...                  (CPU: gloo; GPUs: nccl)
  accelerate launch --config_file recipes/accelerate/fsdp.yaml -m tongues pretrain ...
  tongues launch slurm --nodes 4 --gpus-per-node 8 --recipe R          (writes an sbatch script)
(`accelerate launch --cpu --num_processes 2` starts a single process unless MPI is installed.)

Re-running the same command resumes from the last checkpoint (also with another process count);
Ctrl-C / SIGTERM write a checkpoint first.
"""


def register(commands: Any) -> None:
    p = commands.add("data tokenize", "turn a prepared corpus into memory-mapped token shards for pretraining",
                     _handle_tokenize)
    p.add_argument("--data", required=True, metavar="PREPARED", help="prepared corpus directory (from `data prepare`)")
    p.add_argument("--tokenizer", required=True, metavar="TOK", help="tokenizer directory (with tokenizer.json)")
    p.add_argument("--out", required=True, metavar="DIR", help="output token directory")
    p.add_argument("--num-proc", type=int, default=None,
                   help="tokenizing processes (output is identical for any number; default: min(2, CPUs))")

    p = commands.add("pretrain", "pretrain a Llama model from scratch (resumes automatically)", _handle_pretrain,
                     description=PRETRAIN_HELP)
    p.add_argument("--recipe", metavar="R", help="recipe YAML: pretrain one of its models via the runner")
    p.add_argument("--model", metavar="NAME", help="with --recipe: which model (default: the recipe's only one)")
    p.add_argument("--data", action="append", default=[], metavar="DIR[=WEIGHT]",
                   help="direct mode: token directory and its mixing weight (repeatable)")
    p.add_argument("--tokenizer", metavar="TOK", help="direct mode: the tokenizer the data was tokenized with")
    p.add_argument("--out", metavar="DIR", help="direct mode: output directory (checkpoints, logs, model/)")
    p.add_argument("--config", metavar="YAML", help="direct mode: a YAML file of pretrain settings (PretrainConfig keys)")
    p.add_argument("--plan", metavar="DIR", help="direct mode: planner output (config.json, plan.json) for shape and budget")
    p.add_argument("--seed", type=int, default=0, help="direct mode: seed of initialization and data order")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (recipe keys with --recipe, PretrainConfig keys in direct mode); repeatable")
    p.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                   help="direct mode: stop after this step with a checkpoint (e.g. to fit a time limit); rerun to go on")
    p.add_argument("--no-export", action="store_true", help="direct mode: do not write the Hugging Face model at the end")

    p = commands.add("export", "export a model: a Hugging Face directory (with model card) or a GGUF file",
                     _handle_export, description=EXPORT_HELP)
    p.add_argument("--model", metavar="DIR", help="a Hugging Face model directory to convert (--format gguf)")
    p.add_argument("--run", metavar="DIR", help="pretraining output directory (uses its latest checkpoint)")
    p.add_argument("--checkpoint", metavar="DIR", help="a specific checkpoint directory (…/checkpoints/step-N)")
    p.add_argument("--step", type=int, default=None, help="with --run: export the checkpoint of this step")
    p.add_argument("--tokenizer", metavar="TOK", help="tokenizer directory (default: the one recorded in the run)")
    p.add_argument("--plan", metavar="DIR", help="planner output whose plan.json goes into the model card")
    p.add_argument("--best", action="store_true", help="with --run: the best-validation checkpoint, not the latest")
    p.add_argument("--format", default="hf", choices=["hf", "gguf"],
                   help="hf: a Hugging Face model directory; gguf: one file for llama.cpp, ollama, LM Studio")
    p.add_argument("--quant", default="f16", help="gguf weights: f16, q8_0 or q4_0")
    p.add_argument("--out", required=True, metavar="DIR|FILE", help="output model directory (hf) or .gguf file")

    p = commands.add("launch slurm", "write an sbatch script that pretrains a recipe's model on a Slurm cluster",
                     _handle_slurm)
    p.add_argument("--recipe", required=True, metavar="R", help="recipe YAML (the same file on the cluster)")
    p.add_argument("--model", metavar="NAME", help="which model of the recipe (default: its only one)")
    p.add_argument("--nodes", type=int, required=True, help="number of nodes")
    p.add_argument("--gpus-per-node", type=int, required=True, help="GPUs (processes) per node")
    p.add_argument("--accelerate-config", default="fsdp",
                   help="ddp, fsdp, deepspeed_zero2 (recipes/accelerate/) or a path to an accelerate config")
    p.add_argument("--time", default="24:00:00", help="Slurm time limit; resubmitting the script resumes")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--account", help="Slurm account")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override passed to every process (repeatable)")
    p.add_argument("--out", default=None, metavar="FILE", help="script path (default: pretrain-<model>.sbatch)")

    _register_sweep(commands)


def _handle_tokenize(args: argparse.Namespace) -> int:
    from tongues.data.tokenize import default_num_proc, tokenize_corpus

    meta = tokenize_corpus(args.data, args.tokenizer, args.out, num_proc=args.num_proc or default_num_proc())
    for split, info in meta["splits"].items():
        print(f"{split}: {info['documents']:,} documents, {info['tokens']:,} tokens ({meta['dtype']}), "
              f"{info['bytes']:,} bytes")
    print(f"wrote {args.out}")
    return 0


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _handle_pretrain(args: argparse.Namespace) -> int:
    from tongues.lm.pretrain import TrainingInterrupted

    try:
        if args.recipe:
            return _pretrain_recipe(args)
        return _pretrain_direct(args)
    except TrainingInterrupted as err:
        if _is_main():
            print(f"\n{err}", file=sys.stderr)
        return 130


def _pretrain_direct(args: argparse.Namespace) -> int:
    from tongues.config import apply_override, read_yaml_mapping, validate
    from tongues.lm.config import PretrainConfig
    from tongues.lm.pretrain import pretrain

    missing = [flag for flag, v in (("--data", args.data), ("--tokenizer", args.tokenizer), ("--out", args.out)) if not v]
    if missing:
        raise ConfigError(f"pretrain: {', '.join(missing)} required (or use --recipe R --model NAME)")
    settings: dict[str, Any] = {}
    source = "--set"
    if args.config:
        source = args.config
        settings = read_yaml_mapping(args.config, "config")
    for item in args.overrides:
        apply_override(settings, item, source=source)
    cfg = validate(PretrainConfig, settings, source=source)
    result = pretrain(cfg, token_dirs(args.data), args.tokenizer, args.out, seed=args.seed, plan_dir=args.plan,
                      stop_after=args.stop_after, export=not args.no_export, plan_stats=_plan(args.plan))
    if _is_main():
        print(json.dumps({k: v for k, v in result.items() if k != "val"}, indent=2))
    return 0


def token_dirs(items: list[str]) -> dict[str, tuple[Path, float]]:
    """`DIR[=WEIGHT]` items as {corpus: (dir, weight)}; a tokenize stage directory expands to its corpora."""
    out: dict[str, tuple[Path, float]] = {}
    for item in items:
        path, _, weight = item.partition("=")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"--data {item}: the weight after '=' must be a number") from None
        root = Path(path)
        if (root / "meta.json").exists():
            out[root.name] = (root, w)
        elif root.is_dir() and (subs := sorted(p for p in root.iterdir() if (p / "meta.json").exists())):
            out.update({p.name: (p, w) for p in subs})
        else:
            raise ConfigError(f"--data {path}: not a token directory (no meta.json); make one with `tongues data tokenize`")
    return out


def _plan(plan_dir: str | None) -> dict[str, Any] | None:
    if plan_dir and (Path(plan_dir) / "plan.json").exists():
        return json.loads((Path(plan_dir) / "plan.json").read_text(encoding="utf-8"))
    return None


def focus_recipe(recipe: Any, model: str | None) -> tuple[Any, str]:
    """The recipe cut down to one model and what it needs (its tokenizer, their corpora), and the name."""
    if model is None:
        if len(recipe.models) != 1:
            raise ConfigError(f"{recipe.name}: --model is required (models: {', '.join(recipe.models) or 'none'})")
        model = next(iter(recipe.models))
    if model not in recipe.models:
        raise ConfigError(f"--model {model}: not in the recipe (models: {', '.join(recipe.models) or 'none'})")
    spec = recipe.models[model]
    tokenizer = recipe.tokenizers[spec.tokenizer]
    corpora = set(spec.corpora) | set(tokenizer.corpora)
    sub = recipe.model_copy(update={
        "corpora": {n: c for n, c in recipe.corpora.items() if n in corpora},
        "tokenizers": {spec.tokenizer: tokenizer},
        "models": {model: spec.model_copy(update={"eval": None})},
    })
    return sub, model


def _pretrain_recipe(args: argparse.Namespace) -> int:
    import inspect

    from tongues.config import load_recipe
    from tongues.run import build_stages, run_recipe, summary_table

    recipe, model = focus_recipe(load_recipe(args.recipe, args.overrides), args.model)
    stages = build_stages(recipe)
    target = f"pretrain-{model}"
    if target not in [s.name for s in stages]:
        raise ConfigError(f"{args.recipe}: the runner has no stage {target} (stages: {', '.join(s.name for s in stages)})")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _is_main():
        return _follow_stages(recipe, stages, target)
    kwargs = {"targets": [target]} if "targets" in inspect.signature(run_recipe).parameters else {}
    results = run_recipe(recipe, **kwargs)
    print()
    print(summary_table(results))
    return 0


def _follow_stages(recipe: Any, stages: list[Any], target: str, poll_s: float = 5.0) -> int:
    """Processes other than rank 0: wait while rank 0's runner finishes the upstream stages, then join
    the pretraining stage (rank 0 runs it through the runner, which writes the manifest)."""
    from tongues.manifest import read_manifest
    from tongues.run import StageContext, resolve, stage_fingerprint

    manifests: dict[str, Any] = {}
    for stage in stages:
        out = recipe.run_dir / stage.name
        fingerprint = stage_fingerprint(stage, recipe, manifests)
        if stage.name == target:
            stored = read_manifest(out)
            if stored and stored.get("status") == "complete" and stored.get("fingerprint") == fingerprint:
                return 0  # up to date: rank 0 skips it too
            ctx = StageContext(stage, recipe, out, {n: recipe.run_dir / n for n in stage.inputs}, recipe.seed, True)
            resolve(stage.entry)(ctx)
            return 0
        while not ((stored := read_manifest(out)) and stored.get("status") == "complete"
                   and stored.get("fingerprint") == fingerprint):
            time.sleep(poll_s)
        manifests[stage.name] = stored
    return 0


EXPORT_HELP = """\
Export a model as a Hugging Face directory (the default) or as one GGUF file for llama.cpp-family
runtimes (f16, q8_0 or q4_0 weights; the SentencePiece tokenizer and chat template included).

examples:
  tongues export --run runs/demo/pretrain-ko --best --out ko-model
  tongues export --model runs/demo/pretrain-ko/model --format gguf --quant q8_0 --out ko.q8_0.gguf
  tongues export --run runs/demo/pretrain-ko --format gguf --out ko.f16.gguf
"""


def _handle_export(args: argparse.Namespace) -> int:
    from tongues.lm.export import export_model, resolve_checkpoint

    if args.format == "gguf":
        import tempfile

        from tongues.lm.gguf_export import QUANTS, export_gguf

        if args.quant not in QUANTS:
            raise ConfigError(f"--quant {args.quant!r}: supported quantizations are {', '.join(QUANTS)}")
        if args.model:
            out = export_gguf(args.model, args.out, args.quant)
        else:
            if not (args.run or args.checkpoint):
                raise ConfigError("export: give --model DIR, --run DIR or --checkpoint DIR")
            checkpoint = resolve_checkpoint(args.checkpoint or args.run, args.step, best=args.best)
            with tempfile.TemporaryDirectory() as tmp:
                hf = export_model(checkpoint, Path(tmp) / "model", args.tokenizer, run_dir=args.run,
                                  plan=_plan(args.plan))
                out = export_gguf(hf, args.out, args.quant)
        print(f"wrote {out} ({args.quant}, {out.stat().st_size / 2**20:.2f} MiB)")
        return 0
    if args.model:
        raise ConfigError("export --model converts a model directory to --format gguf; an hf export takes --run or "
                          "--checkpoint")
    if not (args.run or args.checkpoint):
        raise ConfigError("export: give --run DIR (latest checkpoint, or --step N / --best) or --checkpoint DIR")
    checkpoint = resolve_checkpoint(args.checkpoint or args.run, args.step, best=args.best)
    out = export_model(checkpoint, args.out, args.tokenizer, run_dir=args.run, plan=_plan(args.plan))
    print(f"exported {checkpoint} -> {out}")
    return 0


def _handle_slurm(args: argparse.Namespace) -> int:
    from tongues.config import load_recipe
    from tongues.lm.launch import write_slurm_script

    _, model = focus_recipe(load_recipe(args.recipe, args.overrides), args.model)
    out = Path(args.out or f"pretrain-{model}.sbatch")
    write_slurm_script(out, recipe=args.recipe, model=model, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                       accelerate_config=args.accelerate_config, time=args.time, partition=args.partition,
                       account=args.account, overrides=args.overrides)
    print(f"wrote {out}: {args.nodes} node(s) x {args.gpus_per_node} GPU(s); submit with `sbatch {out}`")
    return 0


def _sweep_description() -> str:
    from tongues.lm import sweep

    return (sweep.__doc__ or "").split("\n\n", 1)[-1]


def _register_sweep(commands: Any) -> None:
    p = commands.add(
        "scaling sweep",
        "train IsoFLOP runs (several sizes per compute budget) with the pretraining stage, for `scaling fit`",
        _handle_sweep,
        description=_sweep_description(),
    )
    p.add_argument("--recipe", required=True, help="recipe whose data, tokenizer and tokenize stages have run")
    p.add_argument("--model", default=None, help="model of the recipe whose data and pretrain settings to use (default: the first)")
    p.add_argument("--budgets", required=True, help="comma-separated compute budgets in FLOPs, e.g. 1e13,3e13,1e14")
    p.add_argument("--sizes", type=int, default=5, help="model sizes per budget")
    p.add_argument("--spread", type=float, default=4.0, help="sizes span N_opt/spread .. N_opt*spread")
    p.add_argument("--law", default="chinchilla", help="law that places N_opt for each budget")
    p.add_argument("--center", default=None,
                   help="spread the sizes around this many parameters instead of the law's N_opt (e.g. 2M)")
    p.add_argument("--token-dir", default=None,
                   help="directory holding one token directory per corpus (default: RUN_DIR/tokenize-MODEL)")
    p.add_argument("--out", default=None, help="sweep directory (default: RUN_DIR/sweep-MODEL)")
    p.add_argument("--dry-run", action="store_true", help="print the runs without training")


def _handle_sweep(args: argparse.Namespace) -> int:
    from tongues.config import load_recipe
    from tongues.errors import DataError
    from tongues.lm.sweep import plan_sweep, run_sweep, vocab_size_of
    from tongues.plan.quantity import parse_quantity

    recipe = load_recipe(args.recipe)
    if not recipe.models:
        raise ConfigError(f"{args.recipe}: no models: defined; the sweep trains a model's data")
    name = args.model or next(iter(recipe.models))
    if name not in recipe.models:
        raise ConfigError(f"--model {name!r} is not a model of {args.recipe} (models: {', '.join(recipe.models)})")
    model = recipe.models[name]
    budgets = [parse_quantity(b, "--budgets") for b in args.budgets.split(",") if b.strip()]
    token_root = Path(args.token_dir) if args.token_dir else recipe.run_dir / f"tokenize-{name}"
    tokenizer_dir = recipe.run_dir / f"tokenizer-{model.tokenizer}"
    data = {corpus: (token_root / corpus, weight) for corpus, weight in model.corpora.items()}
    missing = [str(d) for d, _ in data.values() if not (d / "meta.json").exists()]
    if missing or not (tokenizer_dir / "tokenizer.json").exists():
        raise DataError(f"no tokenized data at {', '.join(missing) or tokenizer_dir}: run `tongues run {args.recipe}` "
                        "first (its data, tokenizer and tokenize stages), or give --token-dir")
    cfg = model.pretrain
    vocab = vocab_size_of([d for d, _ in data.values()], tokenizer_dir)
    runs = plan_sweep([b for b in budgets if b], args.sizes, vocab, cfg.seq_len, cfg.micro_batch_size,
                      cfg.global_batch_tokens, law=args.law, spread=args.spread,
                      center=parse_quantity(args.center, "--center"))
    for run in runs:
        print(f"{run.name}: {run.params:,} params, {run.tokens:,} tokens ({run.tokens / run.params:.1f}/param), "
              f"{run.steps} steps of {run.global_batch_tokens} tokens, {run.flops:.3g} FLOPs")
    if args.dry_run:
        return 0
    out = Path(args.out) if args.out else recipe.run_dir / f"sweep-{name}"
    records = run_sweep(runs, out, cfg, data, tokenizer_dir, seed=recipe.seed)
    print(f"{len(records)} runs in {out / 'runs.jsonl'}; next: tongues scaling fit {out}")
    return 0
