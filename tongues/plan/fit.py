"""Fit a scaling law to a sweep of training runs: Chinchilla approaches 3 and 2.

Approach 3 (Hoffmann et al. 2022, App. D.2): ``L(N, D) = E + A/N**alpha + B/D**beta``, fitted as
``log L ≈ LSE(a - alpha log N, b - beta log D, e)`` (A = e^a, B = e^b, E = e^e) by minimising the
Huber loss (delta = 1e-3) of the log-loss residuals with L-BFGS, started from Chinchilla's grid
(alpha, beta ∈ {0, 0.5, …, 2}, e ∈ {-1, -0.5, …, 1}, a, b ∈ {0, 5, …, 25}: 4500 points). The
objective is evaluated at every grid point and L-BFGS runs from the best `starts` of them (all
4500 with ``starts=None``) with scipy's default tolerances; the best result is then polished to
tight tolerances (Besiroglu et al. 2024 traced the paper's implausibly narrow intervals to an
optimiser that stopped early). Bootstrap refits start from the full fit and the resample's two
best grid points.

Approach 2: runs are grouped by compute (FLOPs within `budget_tolerance`); in each group a
parabola in log N is fitted to the loss and its vertex is that budget's N_opt (D_opt = C / 6N);
``N_opt = k_N C**a`` and ``D_opt = k_D C**b`` are fitted across groups.

Intervals are bootstrap percentiles: runs are resampled with replacement (within each budget
for approach 2) and everything is refitted.

The loss may be nats per token (`metric="loss"`) or bits per UTF-8 byte (`metric="bpb"`), which
compares across tokenizers. The fitted law is a JSON file that `tongues plan --law fitted:PATH`
reads (`tongues.plan.scaling.load_fitted_law`).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tongues.errors import DataError, TonguesError
from tongues.manifest import atomic_path, write_json
from tongues.plan.scaling import BPB, FITTED_FORMAT, NATS, TOTAL, ParametricLaw

HUBER_DELTA = 1e-3
_GRID = np.array(list(itertools.product(
    np.arange(0, 30, 5.0),  # a
    np.arange(0, 30, 5.0),  # b
    np.arange(-1, 1.5, 0.5),  # e
    np.arange(0, 2.5, 0.5),  # alpha
    np.arange(0, 2.5, 0.5),  # beta
)))
_NAMES = ("E", "A", "B", "alpha", "beta")


# ---------------------------------------------------------------------------------------------
# Runs


def load_runs(path: str | Path) -> list[dict[str, Any]]:
    """Runs from a .jsonl / .json file or a sweep directory (runs.jsonl, or */run.json).

    Each run needs positive numbers `params` and `tokens`; `loss`, `bpb`, `flops` are checked
    when used. DataError names the file and line (or index) of a bad run.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "runs.jsonl").is_file():
            return load_runs(path / "runs.jsonl")
        files = sorted(path.glob("*/run.json"))
        if not files:
            raise DataError(f"{path}: no runs.jsonl and no */run.json in this directory")
        runs = []
        for file in files:
            runs.extend(_check_runs(_read_json(file), str(file)))
        return runs
    if not path.is_file():
        raise DataError(f"{path}: runs file does not exist")
    if path.suffix == ".jsonl":
        runs = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                runs.append(json.loads(line))
            except ValueError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err})") from None
        return _check_runs(runs, str(path), lines=True)
    data = _read_json(path)
    if isinstance(data, dict) and "runs" in data:
        data = data["runs"]
    return _check_runs(data, str(path))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def _check_runs(data: Any, where: str, lines: bool = False) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{where}: expected a list of runs (objects with params, tokens, loss)")
    for i, run in enumerate(data):
        at = f"{where}:{i + 1}" if lines else f"{where}: run {i}"
        if not isinstance(run, dict):
            raise DataError(f"{at}: a run must be an object with params, tokens, loss")
        for key in ("params", "tokens"):
            if key not in run:
                raise DataError(f"{at}: key {key!r} is missing")
            if not _positive(run[key]):
                raise DataError(f"{at}: key {key!r} must be a positive number, got {run[key]!r}")
        run["_where"] = at
    return data


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _columns(runs: list[dict[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    for run in runs:
        if metric not in run:
            raise DataError(f"{run.get('_where', 'run')}: key {metric!r} is missing (needed for --metric {metric})")
        if not _positive(run[metric]):
            raise DataError(f"{run.get('_where', 'run')}: key {metric!r} must be a positive number, got {run[metric]!r}")
        if "flops" in run and not _positive(run["flops"]):
            raise DataError(f"{run.get('_where', 'run')}: key 'flops' must be a positive number, got {run['flops']!r}")
    n = np.array([float(r["params"]) for r in runs])
    d = np.array([float(r["tokens"]) for r in runs])
    c = np.array([float(r.get("flops") or 6.0 * r["params"] * r["tokens"]) for r in runs])
    y = np.array([float(r[metric]) for r in runs])
    return n, d, c, y


# ---------------------------------------------------------------------------------------------
# Approach 3


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_y: np.ndarray) -> tuple[float, np.ndarray]:
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    r = top + np.log(total) - log_y
    weights /= total
    small = np.abs(r) <= HUBER_DELTA
    value = np.where(small, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA)).sum()
    psi = np.where(small, r, HUBER_DELTA * np.sign(r))
    grad = np.array([
        (psi * weights[0]).sum(), (psi * weights[1]).sum(), (psi * weights[2]).sum(),
        -(psi * weights[0] * log_n).sum(), -(psi * weights[1] * log_d).sum(),
    ])
    return float(value), grad


def _grid_values(log_n: np.ndarray, log_d: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    g = _GRID
    t1 = g[:, [0]] - g[:, [3]] * log_n
    t2 = g[:, [1]] - g[:, [4]] * log_d
    t3 = np.repeat(g[:, [2]], len(log_n), axis=1)
    r = np.logaddexp(np.logaddexp(t1, t2), t3) - log_y
    return np.where(np.abs(r) <= HUBER_DELTA, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA)).sum(axis=1)


def fit_parametric(
    params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, *, starts: int | None = 64,
    extra_starts: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """Approach-3 fit; returns (a, b, e, alpha, beta) and the Huber objective at the optimum."""
    from scipy.optimize import minimize

    log_n, log_d, log_y = np.log(params), np.log(tokens), np.log(loss)
    values = _grid_values(log_n, log_d, log_y)
    order = np.argsort(values) if starts is None else np.argsort(values)[:starts]
    inits = [*(extra_starts or []), *_GRID[order]]
    best_theta, best_value = None, math.inf
    bounds = [(None, None), (None, None), (None, None), (0.0, 5.0), (0.0, 5.0)]
    args = (log_n, log_d, log_y)
    for init in inits:  # scipy's default tolerances to find the basin ...
        result = minimize(_objective, init, args=args, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": 500})
        if result.fun < best_value:
            best_theta, best_value = result.x, float(result.fun)
    assert best_theta is not None
    # ... then polish the best to tight tolerances (a loose stop biases the constants).
    result = minimize(_objective, best_theta, args=args, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12})
    if result.fun <= best_value:
        best_theta, best_value = result.x, float(result.fun)
    return np.asarray(best_theta, dtype=float), best_value


def _constants(theta: np.ndarray) -> dict[str, float]:
    a, b, e, alpha, beta = (float(v) for v in theta)
    out = {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}
    total = alpha + beta
    out["a"] = beta / total if total > 0 else math.nan
    out["b"] = alpha / total if total > 0 else math.nan
    return out


# ---------------------------------------------------------------------------------------------
# Approach 2


def group_budgets(flops: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """Indices of runs grouped by compute: sorted by FLOPs, a run joins the current group when its
    FLOPs are within `tolerance` (relative) of the group's first run."""
    order = np.argsort(flops)
    groups: list[list[int]] = []
    for i in order:
        if groups and flops[i] <= flops[groups[-1][0]] * (1 + tolerance):
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    return [np.array(g) for g in groups]


def fit_isoflops(params: np.ndarray, flops: np.ndarray, loss: np.ndarray, groups: list[np.ndarray]) -> dict[str, Any]:
    """Parabola per budget (loss vs log N) and the power laws through their minima."""
    rows = []
    for idx in groups:
        sizes = np.unique(params[idx])
        c = float(np.exp(np.mean(np.log(flops[idx]))))
        row: dict[str, Any] = {"flops": c, "runs": len(idx)}
        if len(sizes) < 3:
            row["skipped"] = "fewer than 3 model sizes"
            rows.append(row)
            continue
        x = np.log(params[idx])
        c2, c1, c0 = np.polyfit(x, loss[idx], 2)
        if c2 <= 0:
            row["skipped"] = "no minimum (the parabola opens downwards)"
            rows.append(row)
            continue
        x_opt = -c1 / (2 * c2)
        if not x.min() - 5.0 <= x_opt <= x.max() + 5.0:  # a near-flat parabola: no usable minimum
            row["skipped"] = "minimum far outside the sizes tried"
            rows.append(row)
            continue
        row.update(
            coefficients=[float(c2), float(c1), float(c0)], params_opt=float(math.exp(x_opt)),
            tokens_opt=float(c / (6 * math.exp(x_opt))), loss_min=float(c0 - c1**2 / (4 * c2)),
            inside=bool(x.min() <= x_opt <= x.max()),
        )
        rows.append(row)
    usable = [r for r in rows if "params_opt" in r and r["inside"]]
    out: dict[str, Any] = {"budgets": rows}
    if len(usable) < 2:
        out["frontier"] = None
        out["reason"] = "need at least two budgets whose parabola has its minimum inside the sizes tried"
        return out
    log_c = np.log([r["flops"] for r in usable])
    a, log_kn = np.polyfit(log_c, np.log([r["params_opt"] for r in usable]), 1)
    b, log_kd = np.polyfit(log_c, np.log([r["tokens_opt"] for r in usable]), 1)
    out["frontier"] = {"a": float(a), "b": float(b), "k_N": float(math.exp(log_kn)), "k_D": float(math.exp(log_kd)),
                       "budgets_used": len(usable)}
    return out


# ---------------------------------------------------------------------------------------------
# The whole fit


@dataclass
class ScalingFit:
    name: str
    metric: str
    unit: str
    n_runs: int
    constants: dict[str, float]  # E, A, B, alpha, beta, a, b
    intervals: dict[str, list[float]]
    confidence: float
    objective: float
    isoflop: dict[str, Any]
    bootstrap: int
    points: dict[str, list[float]] = field(repr=False)  # params, tokens, flops, value, group

    def law(self) -> ParametricLaw:
        c = self.constants
        p = self.points
        return ParametricLaw(self.name, c["E"], c["A"], c["B"], c["alpha"], c["beta"], param_count=TOTAL, unit=self.unit,
                             source="fitted with tongues scaling fit",
                             fitted_on=((min(p["params"]), max(p["params"])), (min(p["tokens"]), max(p["tokens"]))))

    def law_json(self) -> dict[str, Any]:
        """The file `tongues plan --law fitted:PATH` reads."""
        return {
            "format": FITTED_FORMAT,
            "name": self.name,
            **{k: self.constants[k] for k in _NAMES},
            "a": self.constants["a"],
            "b": self.constants["b"],
            "param_count": TOTAL,
            "unit": self.unit,
            "metric": self.metric,
            "form": "L(N, D) = E + A / N^alpha + B / D^beta",
            "method": f"Chinchilla approach 3: Huber (delta={HUBER_DELTA}) on log-loss, L-BFGS from a grid",
            "confidence": self.confidence,
            "intervals": self.intervals,
            "bootstrap": self.bootstrap,
            "huber_objective": self.objective,
            "n_runs": self.n_runs,
            "fitted_on": {"params": [min(self.points["params"]), max(self.points["params"])],
                          "tokens": [min(self.points["tokens"]), max(self.points["tokens"])]},
            "isoflop": self.isoflop,
        }

    def to_markdown(self) -> str:
        c, iv = self.constants, self.intervals
        pct = f"{self.confidence:.0%}"
        lines = [
            f"# Scaling-law fit: {self.name} ({self.n_runs} runs, {self.unit})",
            "",
            f"L(N, D) = {c['E']:.4g} + {c['A']:.4g} / N^{c['alpha']:.4g} + {c['B']:.4g} / D^{c['beta']:.4g}",
            "",
            f"| constant | value | {pct} interval ({self.bootstrap} bootstrap resamples) |",
            "|---|---|---|",
        ]
        for key in (*_NAMES, "a", "b"):
            lo, hi = iv.get(key, [math.nan, math.nan])
            label = {"a": "a (N_opt ∝ C^a)", "b": "b (D_opt ∝ C^b)"}.get(key, key)
            lines.append(f"| {label} | {c[key]:.4g} | {lo:.4g} – {hi:.4g} |")
        lines += ["", "## IsoFLOP profiles (approach 2)", "", "| budget (FLOPs) | runs | N_opt | D_opt | min loss |",
                  "|---|---|---|---|---|"]
        for row in self.isoflop["budgets"]:
            if "params_opt" in row:
                flag = "" if row["inside"] else " (outside the sizes tried)"
                lines.append(f"| {row['flops']:.3g} | {row['runs']} | {row['params_opt']:.3g}{flag} | "
                             f"{row['tokens_opt']:.3g} | {row['loss_min']:.4g} |")
            else:
                lines.append(f"| {row['flops']:.3g} | {row['runs']} | - | - | {row['skipped']} |")
        front = self.isoflop.get("frontier")
        if front:
            ai, bi = self.isoflop.get("intervals", {}).get("a"), self.isoflop.get("intervals", {}).get("b")
            lines += ["", f"N_opt = {front['k_N']:.3g}·C^{front['a']:.3f}"
                      + (f" (a: {ai[0]:.3f} – {ai[1]:.3f})" if ai else "")
                      + f", D_opt = {front['k_D']:.3g}·C^{front['b']:.3f}"
                      + (f" (b: {bi[0]:.3f} – {bi[1]:.3f})" if bi else "")]
        else:
            lines += ["", f"No IsoFLOP frontier: {self.isoflop.get('reason')}"]
        return "\n".join(lines) + "\n"


def fit_runs(
    runs: list[dict[str, Any]],
    *,
    metric: str = "loss",
    bootstrap: int = 200,
    confidence: float = 0.95,
    budget_tolerance: float = 0.1,
    seed: int = 0,
    name: str = "fitted",
    starts: int | None = 64,
) -> ScalingFit:
    """Fit approaches 3 and 2 to `runs` (see `load_runs`), with bootstrap intervals."""
    if metric not in ("loss", "bpb"):
        raise TonguesError(f"metric must be 'loss' or 'bpb', got {metric!r}")
    if len(runs) < 5:
        raise DataError(f"need at least 5 runs to fit E, A, B, alpha, beta; got {len(runs)}")
    n, d, c, y = _columns(runs, metric)
    with _single_threaded_blas():
        return _fit(n, d, c, y, len(runs), metric, bootstrap, confidence, budget_tolerance, seed, name, starts)


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    # L-BFGS-B calls BLAS on 5-vectors thousands of times; OpenBLAS's thread pool makes each call
    # 10-20x slower (worse on a shared machine), so the fit runs single-threaded.
    import scipy.optimize  # noqa: F401  (load its BLAS first: threadpoolctl limits only loaded libraries)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the fit is correct without it, only slower
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _fit(n: np.ndarray, d: np.ndarray, c: np.ndarray, y: np.ndarray, n_runs: int, metric: str, bootstrap: int,
         confidence: float, budget_tolerance: float, seed: int, name: str, starts: int | None) -> ScalingFit:
    theta, objective = fit_parametric(n, d, y, starts=starts)
    groups = group_budgets(c, budget_tolerance)
    isoflop = fit_isoflops(n, c, y, groups)
    rng = np.random.default_rng(seed)
    samples, iso_samples = [], []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(n), len(n))
        if len(np.unique(n[pick])) < 2 or len(np.unique(d[pick])) < 2:
            continue
        fitted, _ = fit_parametric(n[pick], d[pick], y[pick], starts=2, extra_starts=[theta])
        samples.append(list(_constants(fitted).values()))
        if isoflop.get("frontier"):
            resampled = [g[rng.integers(0, len(g), len(g))] for g in groups]
            front = fit_isoflops(n, c, y, resampled).get("frontier")
            if front:
                iso_samples.append((front["a"], front["b"]))
    tail = 100 * (1 - confidence) / 2
    keys = (*_NAMES, "a", "b")
    intervals: dict[str, list[float]] = {}
    if samples:
        table = np.array(samples)
        for j, key in enumerate(keys):
            lo, hi = np.nanpercentile(table[:, j], [tail, 100 - tail])
            intervals[key] = [float(lo), float(hi)]
    if iso_samples:
        table = np.array(iso_samples)
        isoflop["intervals"] = {k: [float(v) for v in np.percentile(table[:, j], [tail, 100 - tail])]
                                for j, k in enumerate(("a", "b"))}
    group_of = np.zeros(len(n), dtype=int)
    for g, idx in enumerate(groups):
        group_of[idx] = g
    return ScalingFit(
        name=name, metric=metric, unit=BPB if metric == "bpb" else NATS, n_runs=n_runs,
        constants=_constants(theta), intervals=intervals, confidence=confidence, objective=objective,
        isoflop=isoflop, bootstrap=len(samples),
        points={"params": n.tolist(), "tokens": d.tolist(), "flops": c.tolist(), "value": y.tolist(),
                "group": group_of.tolist()},
    )


def plot_isoflops(fit: ScalingFit, path: str | Path) -> None:
    """IsoFLOP curves with their minima (left) and the compute-optimal frontier N_opt(C) (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = fit.points
    n, y, groups = np.array(p["params"]), np.array(p["value"]), np.array(p["group"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(fit.isoflop["budgets"]), 1)))
    for g, row in enumerate(fit.isoflop["budgets"]):
        mask = groups == g
        left.scatter(n[mask], y[mask], color=colors[g], s=18, label=f"{row['flops']:.2g} FLOPs")
        if "coefficients" in row:
            xs = np.linspace(np.log(n[mask].min()) - 0.2, np.log(n[mask].max()) + 0.2, 100)
            left.plot(np.exp(xs), np.polyval(row["coefficients"], xs), color=colors[g], lw=1)
            left.scatter([row["params_opt"]], [row["loss_min"]], color=colors[g], marker="*", s=160,
                         edgecolor="black", zorder=5)
    left.set_xscale("log")
    left.set_xlabel("parameters N")
    left.set_ylabel(f"final loss ({fit.unit})")
    left.set_title("IsoFLOP profiles (stars: minima)")
    left.legend(fontsize=7)
    minima = [r for r in fit.isoflop["budgets"] if "params_opt" in r]
    budgets = np.array([r["flops"] for r in fit.isoflop["budgets"]] or [1.0])
    cs = np.geomspace(budgets.min() / 3, budgets.max() * 30, 100)
    law = fit.law()
    right.plot(cs, [law.optimal(c)[0] for c in cs], color="black",
               label=f"approach 3: N_opt ∝ C^{law.a:.3f}")
    front = fit.isoflop.get("frontier")
    if front:
        right.plot(cs, front["k_N"] * cs ** front["a"], color="tab:orange", ls="--",
                   label=f"approach 2: N_opt ∝ C^{front['a']:.3f}")
    if minima:
        right.scatter([r["flops"] for r in minima], [r["params_opt"] for r in minima], color="tab:orange",
                      marker="*", s=140, edgecolor="black", zorder=5, label="IsoFLOP minima")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("compute C (FLOPs)")
    right.set_ylabel("compute-optimal N")
    right.set_title("fitted frontier")
    right.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_fit(fit: ScalingFit, out_dir: str | Path) -> dict[str, Path]:
    """Write law.json, isoflops.png and fit.md into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"law": out / "law.json", "plot": out / "isoflops.png", "report": out / "fit.md"}
    write_json(paths["law"], fit.law_json())
    plot_isoflops(fit, paths["plot"])
    with atomic_path(paths["report"]) as tmp:
        tmp.write_text(fit.to_markdown() + "\n![IsoFLOP profiles](isoflops.png)\n", encoding="utf-8")
    return paths
