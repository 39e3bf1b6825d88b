"""`tongues scaling sweep`: IsoFLOP runs for your own scaling law, trained by the pretraining stage.

For each compute budget C the sweep trains `sizes` models whose parameter counts are spread
log-evenly over [N_opt / spread, N_opt · spread] around the law's optimum, each for exactly
D = C / (6 N) tokens (rounded to whole optimizer steps; the FLOPs actually spent are recorded).
Training is `tongues.lm.pretrain.pretrain` — the same loop as the pretraining stage, not a second
one — on the token directories a recipe run produced. Every run writes DIR/<run>/run.json and the
sweep keeps DIR/runs.jsonl (the format `tongues scaling fit` reads: params, tokens, flops, loss in
nats/token, bpb). A finished run is skipped when the sweep is started again; an interrupted one
resumes from its checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tongues.errors import DataError, TonguesError
from tongues.manifest import atomic_path, write_json
from tongues.plan.scaling import get_law
from tongues.plan.shapes import ModelShape, shape_for_params

MIN_STEPS = 20  # fewer optimizer steps and the schedule, not the model size, decides the loss


@dataclass
class SweepRun:
    name: str
    budget: float
    params: int
    tokens: int
    steps: int
    global_batch_tokens: int
    shape: ModelShape

    @property
    def flops(self) -> float:
        return 6.0 * self.params * self.tokens


def plan_sweep(
    budgets: list[float], sizes: int, vocab_size: int, seq_len: int, micro_batch: int, max_batch_tokens: int,
    *, law: str = "chinchilla", spread: float = 4.0, center: float | None = None,
) -> list[SweepRun]:
    """The runs of a sweep: for each budget, `sizes` shapes around the law's optimum (or around
    `center` parameters, e.g. when the optimum is smaller than the vocabulary allows), each trained
    to its budget. Sizes that round to the same shape are run once."""
    if sizes < 3:
        raise TonguesError(f"--sizes must be at least 3 (a parabola needs three points), got {sizes}")
    if spread <= 1:
        raise TonguesError(f"--spread must be > 1, got {spread}")
    scaling_law = get_law(law)
    unit = seq_len * micro_batch  # one micro-batch; a global batch is a whole number of them
    runs: list[SweepRun] = []
    for budget in sorted(budgets):
        if not budget > 0:
            raise TonguesError(f"--budgets must be positive numbers, got {budget}")
        n_opt = center if center is not None else scaling_law.optimal(budget)[0]
        seen: set[int] = set()
        for factor in np.geomspace(1 / spread, spread, sizes):
            shape = shape_for_params(n_opt * factor, vocab_size, seq_len)
            params = shape.param_count()
            if params in seen:  # tiny budgets: two targets can land on the same shape
                continue
            seen.add(params)
            tokens = budget / (6.0 * params)
            batch = max(unit, min(max_batch_tokens, int(tokens / MIN_STEPS) // unit * unit))
            steps = max(1, round(tokens / batch))
            runs.append(SweepRun(f"C{budget:.1e}-N{params}", budget, params, steps * batch, steps, batch, shape))
    return runs


def run_sweep(
    runs: list[SweepRun], out_dir: str | Path, base_config: Any, data: dict[str, tuple[Path, float]],
    tokenizer_dir: str | Path, *, seed: int = 0,
) -> list[dict[str, Any]]:
    """Train every run with the pretraining loop; returns the records written to runs.jsonl."""
    from tongues.lm.pretrain import pretrain
    from tongues.progress import progress_bar as tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for run in tqdm(runs, desc="sweep", unit="run"):
        run_dir = out / run.name
        record_path = run_dir / "run.json"
        if record_path.exists():
            records.append(json.loads(record_path.read_text(encoding="utf-8")))
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path = run_dir / "config.json"
        with atomic_path(config_path) as tmp:
            run.shape.llama_config().to_json_file(str(tmp))
        cfg = base_config.model_copy(update={
            "model": None, "model_config_file": str(config_path), "max_steps": run.steps, "train_tokens": None,
            "global_batch_tokens": run.global_batch_tokens, "warmup_steps": min(base_config.warmup_steps, max(1, run.steps // 10)),
            "eval_every": run.steps, "checkpoint_every": max(1, run.steps // 4),
        })
        result = pretrain(cfg, data, tokenizer_dir, run_dir / "train", seed=seed, export=False)
        if "val_loss" not in result:
            raise DataError(f"{run.name}: the run finished without a validation loss (is there a validation split?)")
        record = {
            "name": run.name, "budget": run.budget, "params": run.params,
            "non_embedding_params": run.shape.param_count(include_embeddings=False),
            "tokens": result.get("tokens", run.tokens), "flops": 6.0 * run.params * result.get("tokens", run.tokens),
            "loss": result["val_loss"], "bpb": result.get("val_bpb"), "steps": result.get("steps"),
            "shape": asdict(run.shape),
        }
        write_json(record_path, record)
        records.append(record)
    with atomic_path(out / "runs.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def vocab_size_of(token_dirs: list[Path], tokenizer_dir: Path) -> int:
    from tongues.data.tokenize import read_meta

    for directory in token_dirs:
        meta = read_meta(directory)
        if meta.get("vocab_size"):
            return int(meta["vocab_size"])
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()


__all__ = ["SweepRun", "plan_sweep", "run_sweep", "vocab_size_of"]
