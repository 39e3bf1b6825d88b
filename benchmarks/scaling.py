"""Planner accuracy: memory estimate, law fitting, published allocations — each beside a baseline.

1. Memory per device: `estimate_memory` against the measured peak of a real training step on CPU
   (`measure_step_peak`: allocator events under the profiler), for several shapes and precisions.
   Baseline, in the same run: the usual rule of thumb — 16 bytes per parameter (weights, grads,
   AdamW) plus activations per layer of s·b·h·(34 + 5·a·s/h) bytes, or 2·s·b·h with full
   recomputation (Korthikanti et al. 2022, for 16-bit activations; doubled for fp32), nothing for
   the logits.
2. Law fitting on synthetic IsoFLOP sweeps drawn from a known law with 1% noise, with and without
   two outlier runs (loss +15%, as a diverged run would report): `fit_runs` (Chinchilla approach 3,
   Huber on log-loss, L-BFGS from a grid) against scipy `curve_fit` least squares on the loss from
   Chinchilla's published constants. Error of the allocation exponent a and of N_opt at 100× the
   largest budget; how often the bootstrap interval holds the true a.
3. Published allocations: Hoffmann et al. Table 3 from `plan(law="chinchilla-approach1")` against
   the popular "20 tokens per parameter" rule; Muennighoff et al.'s worked examples.

    .venv/bin/python benchmarks/scaling.py            # writes the `## scaling` section of RESULTS.md
    .venv/bin/python benchmarks/scaling.py --seeds 4 --no-write
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))  # for benchmarks.results, without this folder shadowing packages

import numpy as np  # noqa: E402

from benchmarks.results import write_section  # noqa: E402
from tongues.lm.memory_probe import measure_step_peak  # noqa: E402
from tongues.plan.fit import fit_runs  # noqa: E402
from tongues.plan.memory import estimate_memory  # noqa: E402
from tongues.plan.planner import plan  # noqa: E402
from tongues.plan.scaling import CHINCHILLA, MUENNIGHOFF_2023, DataConstrainedLaw, ParametricLaw  # noqa: E402
from tongues.plan.shapes import ModelShape  # noqa: E402

MEMORY_CASES = [
    # (label, shape, micro-batch, seq_len, precision, accumulation, checkpointing[, loss, chunk])
    ("fp32, vocab-heavy", ModelShape(4, 128, 4, 4, 384, 2000, True, 128), 4, 128, "fp32", 1, False),
    ("fp32, GQA, untied, 2 micro-batches", ModelShape(2, 256, 8, 2, 704, 500, False, 256), 2, 256, "fp32", 2, False),
    ("fp32, 6 layers, seq 512", ModelShape(6, 192, 6, 6, 512, 4000, True, 512), 2, 512, "fp32", 1, False),
    ("fp32, checkpointing", ModelShape(4, 128, 4, 4, 384, 2000, True, 128), 4, 128, "fp32", 1, True),
    ("fp32, checkpointing, small vocab", ModelShape(4, 256, 8, 8, 1024, 256, True, 256), 4, 256, "fp32", 1, True),
    ("bf16 autocast (GPU default)", ModelShape(4, 128, 4, 4, 384, 2000, True, 128), 4, 128, "bf16-mixed", 1, False),
    ("bf16 weights", ModelShape(4, 128, 4, 4, 384, 2000, True, 128), 4, 128, "bf16", 1, False),
    # the chunked loss `tongues pretrain` trains with (no logits kept), at a small and a large chunk
    ("chunked loss, fp32, chunk 128", ModelShape(4, 128, 4, 4, 384, 2000, True, 128), 4, 128, "fp32", 1, False,
     "chunked", 128),
    ("chunked loss, bf16 autocast, chunk 512", ModelShape(6, 192, 6, 6, 512, 4000, True, 512), 2, 512,
     "bf16-mixed", 1, False, "chunked", 512),
    ("chunked loss, checkpointing, chunk 256", ModelShape(4, 128, 4, 4, 384, 2000, True, 128), 4, 128, "fp32", 1,
     True, "chunked", 256),
]
TRUE = ParametricLaw("true", E=2.0, A=300.0, B=600.0, alpha=0.32, beta=0.30)
TABLE_3 = [(400e6, 1.92e19, 8.0e9), (1e9, 1.21e20, 20.2e9), (10e9, 1.23e22, 205.1e9), (67e9, 5.76e23, 1.5e12)]


def rule_of_thumb(shape: ModelShape, batch: int, seq_len: int, precision: str, checkpointing: bool) -> float:
    static = 16.0 * shape.param_count()
    sbh = seq_len * batch * shape.d_model
    # Korthikanti et al. 2022: 34·sbh + 5·a·s²·b per layer; with full recomputation 2·sbh per layer
    per_layer = 2 * sbh if checkpointing else sbh * (34 + 5 * shape.n_heads * seq_len / shape.d_model)
    scale = 2.0 if precision == "fp32" else 1.0
    return static + shape.n_layers * per_layer * scale


def memory_section() -> list[str]:
    rows = ["| case | params | measured MiB | ours MiB (error) | rule of thumb MiB (error) |", "|---|---|---|---|---|"]
    errors = {"ours": [], "rule": []}
    for label, shape, batch, seq, precision, accum, ckpt, *loss in MEMORY_CASES:
        how = dict(zip(("loss", "chunk"), loss, strict=False))
        measured = measure_step_peak(shape, batch, seq, precision=precision, accumulation=accum, checkpointing=ckpt,
                                     **how)
        ours = estimate_memory(shape, batch, seq, precision=precision, grads_live=accum > 1, checkpointing=ckpt,
                               **how).peak
        rule = rule_of_thumb(shape, batch, seq, precision, ckpt)
        e_ours, e_rule = ours / measured - 1, rule / measured - 1
        errors["ours"].append(abs(e_ours))
        errors["rule"].append(abs(e_rule))
        rows.append(f"| {label} (b={batch}, s={seq}) | {shape.param_count() / 1e6:.2f}M | {measured / 2**20:.1f} | "
                    f"{ours / 2**20:.1f} ({e_ours:+.1%}) | {rule / 2**20:.1f} ({e_rule:+.1%}) |")
        print(rows[-1], flush=True)
    rows.append(f"| **mean absolute error** | | | **{np.mean(errors['ours']):.1%}** | **{np.mean(errors['rule']):.1%}** |")
    return rows


def synthetic(seed: int, outliers: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    runs = []
    for flops in np.geomspace(1e14, 1e17, 5):
        n_opt, _ = TRUE.optimal(flops)
        for params in n_opt * np.geomspace(0.1, 10, 7):
            tokens = flops / (6 * params)
            runs.append({"params": params, "tokens": tokens, "flops": flops,
                         "loss": TRUE.loss(params, tokens) * float(np.exp(rng.normal(0, 0.01)))})
    for i in rng.choice(len(runs), outliers, replace=False):
        runs[i]["loss"] *= 1.15
    return runs


def least_squares(runs: list[dict]) -> ParametricLaw:
    from scipy.optimize import curve_fit

    n = np.array([r["params"] for r in runs])
    d = np.array([r["tokens"] for r in runs])
    y = np.array([r["loss"] for r in runs])

    def model(x, e, a, b, alpha, beta):  # noqa: ANN001, ANN202
        return e + a / x[0] ** alpha + b / x[1] ** beta

    p0 = (CHINCHILLA.E, CHINCHILLA.A, CHINCHILLA.B, CHINCHILLA.alpha, CHINCHILLA.beta)
    try:
        p, _ = curve_fit(model, np.vstack([n, d]), y, p0=p0, maxfev=20000)
    except RuntimeError:
        p = p0
    return ParametricLaw("lsq", *map(float, p))


def fit_section(seeds: int, bootstrap: int) -> list[str]:
    rows = ["| outliers | method | median abs error of a | median error of N_opt at 1e19 FLOPs | true a inside interval |",
            "|---|---|---|---|---|"]
    n_true, _ = TRUE.optimal(1e19)
    for outliers in (0, 2):
        result = {"ours": ([], [], 0), "lsq": ([], [], None)}
        covered = 0
        for seed in range(seeds):
            runs = synthetic(seed, outliers)
            fit = fit_runs(runs, bootstrap=bootstrap, starts=32, seed=seed)
            lo, hi = fit.intervals["a"]
            covered += lo <= TRUE.a <= hi
            for key, law in (("ours", fit.law()), ("lsq", least_squares(runs))):
                result[key][0].append(abs(law.a - TRUE.a))
                result[key][1].append(abs(math.log(law.optimal(1e19)[0] / n_true)))
        for key, label in (("ours", "tongues (Huber on log-loss, L-BFGS from grid)"), ("lsq", "least squares on loss (curve_fit)")):
            err_a, err_n, _ = result[key]
            cover = f"{covered}/{seeds}" if key == "ours" else "-"
            rows.append(f"| {outliers} | {label} | {np.median(err_a):.4f} | {math.expm1(np.median(err_n)):.1%} | {cover} |")
            print(rows[-1], flush=True)
    return rows


def planner_section() -> list[str]:
    rows = ["| Table 3 row | tongues approach 1: N, D error | 20 tokens/param rule: N, D error |", "|---|---|---|"]
    worst = [0.0, 0.0]
    for params, flops, tokens in TABLE_3:
        p = plan(flops=flops, law="chinchilla-approach1")
        rule_n = math.sqrt(flops / 120.0)
        e = (p.params / params - 1, p.tokens / tokens - 1)
        r = (rule_n / params - 1, 20 * rule_n / tokens - 1)
        worst = [max(worst[0], *map(abs, e)), max(worst[1], *map(abs, r))]
        rows.append(f"| {params / 1e9:g}B, {flops:.3g} FLOPs | {e[0]:+.2%}, {e[1]:+.2%} | {r[0]:+.2%}, {r[1]:+.2%} |")
    rows.append(f"| **worst** | **{worst[0]:.2%}** | **{worst[1]:.2%}** |")
    law = DataConstrainedLaw(MUENNIGHOFF_2023)
    n, d = law.optimal(6 * 8.67e9 * 178e9, 25e9)
    rows += ["", "Muennighoff et al. 2023 worked examples (their constants): "
             f"L(6.34B, 242B, U=25B) = {law.loss(6.34e9, 242e9, 25e9):.5f} (paper 2.22564); "
             f"L(8.67B, 178B, 25B) = {law.loss(8.67e9, 178e9, 25e9):.5f} (paper 2.22696); optimum at that compute "
             f"{n / 1e9:.2f}B params on {d / 1e9:.1f}B tokens, {d / 25e9:.2f} epochs (paper: ~6.8B, ~227B, 9.1)."]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="synthetic sweeps per setting")
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples per fit")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args()
    start = time.perf_counter()
    memory = memory_section()
    fits = fit_section(args.seeds, args.bootstrap)
    planner = planner_section()
    print("\n".join(planner))
    if args.no_write:
        return
    cmd = f".venv/bin/python benchmarks/scaling.py --seeds {args.seeds} --bootstrap {args.bootstrap}"
    section = "\n".join([
        "## scaling", "",
        f"`{cmd}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} shared CPU cores, "
        f"{(time.perf_counter() - start) / 60:.1f} min). Details and method: benchmarks/scaling.md.", "",
        "Memory per device, one steady-state training step (AdamW, fused), estimate vs measured peak of live "
        "tensors on CPU:", "", *memory, "",
        f"Fitting L(N,D) to synthetic IsoFLOP sweeps (5 budgets × 7 sizes, 1% noise, {args.seeds} seeds; true "
        f"a = {TRUE.a:.4f}):", "", *fits, "",
        "Published allocations:", "", *planner, "",
    ])
    write_section(section)


if __name__ == "__main__":
    main()
