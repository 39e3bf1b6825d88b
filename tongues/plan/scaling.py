"""Scaling laws: how loss depends on parameters N and training tokens D, and the compute-optimal split.

Two kinds of law are used:

- Parametric laws ``L(N, D) = E + A / N**alpha + B / D**beta`` (Chinchilla approach 3 and its
  refits). Minimising L under ``C = 6 N D`` gives the closed form
  ``N_opt = G (C/6)**a``, ``D_opt = (C/6)**b / G`` with ``a = beta/(alpha+beta)``,
  ``b = alpha/(alpha+beta)``, ``G = (alpha A / (beta B))**(1/(alpha+beta))``.
- Frontier laws (Chinchilla approaches 1 and 2): the compute-optimal frontier the paper published
  as a table (Hoffmann et al. 2022, Table 3 for approach 1, Table A3 for approach 2). We follow the
  table exactly, interpolating log-linearly between its rows, and extrapolate beyond it along power
  laws ``N ~ C**a``, ``D ~ C**b`` whose exponents are least-squares fits to all its rows (0.498 and
  0.502 for approach 1, which the paper rounds to 0.50/0.50; 0.490 and 0.510 for approach 2). A
  frontier has no loss function; its predicted loss comes from the Epoch AI refit of the same data.

All published laws here count *total* parameters, embeddings included (Chinchilla counts them,
unlike Kaplan et al. 2020) and measure loss in nats per token of their own tokenizer and data, so
their absolute losses do not transfer to another language; fit your own (`tongues scaling fit`).

Data-constrained training (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models"):
repeated tokens are worth less than fresh ones. With ``U`` unique tokens and ``D`` tokens seen,
``R_D = D/U - 1`` repetitions count as ``D' = U + U R*_D (1 - exp(-R_D / R*_D))`` effective tokens;
parameters beyond ``U_N`` (the compute-optimal size for U tokens) count as
``N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N))`` with ``R_N = N/U_N - 1``. Loss is the base law at
``(N', D')``. Up to about 4 epochs repeated data is almost as good as new; the value of further
repetitions decays with R*_D ≈ 15.4 and is negligible past about 16 epochs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tongues.errors import TonguesError

TOTAL = "total"  # the law counts every parameter, embeddings included
NON_EMBEDDING = "non_embedding"  # the law counts parameters outside the embedding / output tables
PARAM_COUNTS = (TOTAL, NON_EMBEDDING)
NATS = "nats/token"
BPB = "bits/byte"

# Muennighoff et al. 2023, fitted decay constants for repeated data and excess parameters.
R_D_STAR = 15.387756
R_N_STAR = 5.309743
FITTED_FORMAT = "tongues-scaling-law/1"


@dataclass(frozen=True)
class ParametricLaw:
    """``L(N, D) = E + A / N**alpha + B / D**beta``; N counted as `param_count`, loss in `unit`."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    param_count: str = TOTAL
    unit: str = NATS
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # ((N_min, N_max), (D_min, D_max)) of the runs the law was fitted on; None when unknown
    fitted_on: tuple[tuple[float, float], tuple[float, float]] | None = field(default=None, compare=False)

    @property
    def parametric(self) -> ParametricLaw:
        return self

    @property
    def a(self) -> float:
        """Exponent of N_opt in compute: N_opt ∝ C**a."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt in compute: D_opt ∝ C**b."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def loss(self, params: float, tokens: float) -> float:
        """Predicted final loss of a model of `params` parameters trained on `tokens` tokens."""
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta

    def optimal(self, flops: float) -> tuple[float, float]:
        """Compute-optimal (N, D) for `flops` = 6 N D."""
        x = flops / 6.0
        return self.G * x**self.a, x**self.b / self.G

    def flops_for_params(self, params: float) -> float:
        """The budget 6 N D at which `params` is the compute-optimal size."""
        return 6.0 * (params / self.G) ** (1.0 / self.a)

    def params_for_tokens(self, tokens: float) -> float:
        """The compute-optimal size for a run of `tokens` tokens."""
        x = (self.G * tokens) ** (1.0 / self.b)
        return x / tokens

    def describe(self) -> str:
        return (
            f"L = {self.E:.4g} + {self.A:.4g}/N^{self.alpha:.4g} + {self.B:.4g}/D^{self.beta:.4g}"
            f" ({self.unit}, N = {self.param_count.replace('_', '-')} parameters)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": "parametric", "E": self.E, "A": self.A, "B": self.B,
            "alpha": self.alpha, "beta": self.beta, "a": self.a, "b": self.b,
            "param_count": self.param_count, "unit": self.unit, "source": self.source,
            "fitted_on": _range_dict(self.fitted_on),
        }


def _range_dict(fitted_on: tuple[tuple[float, float], tuple[float, float]] | None) -> dict[str, list[float]] | None:
    return None if fitted_on is None else {"params": list(fitted_on[0]), "tokens": list(fitted_on[1])}


EXTRAPOLATION_FACTOR = 10.0  # N or D this many times outside the fitted runs' range: an extrapolation


def extrapolation(law: ParametricLaw, params: float, tokens: float, loss: float | None = None,
                  vocab_size: int | None = None) -> list[str]:
    """Why the law's prediction at (N, D) is an extrapolation (empty when it is not): N or D more than
    10× outside the range of the runs the law was fitted on, or a predicted loss (nats/token) above
    ln V, which is worse than guessing uniformly over the vocabulary."""
    reasons = []
    if law.fitted_on is not None:
        for value, (lo, hi), what in ((params, law.fitted_on[0], "N"), (tokens, law.fitted_on[1], "D")):
            if value < lo / EXTRAPOLATION_FACTOR:
                reasons.append(f"{what}={value:.3g} is {lo / value:.0f}× below the smallest fitted run ({lo:.3g})")
            elif value > hi * EXTRAPOLATION_FACTOR:
                reasons.append(f"{what}={value:.3g} is {value / hi:.0f}× above the largest fitted run ({hi:.3g})")
    if loss is not None and vocab_size and law.unit == NATS and loss > math.log(vocab_size):
        reasons.append(f"the predicted loss {loss:.2f} nats/token is above ln V = {math.log(vocab_size):.2f} "
                       "(uniform guessing over the vocabulary)")
    return reasons


@dataclass(frozen=True)
class FrontierLaw:
    """A published compute-optimal frontier (rows of N, C, D), interpolated in log-log space."""

    name: str
    rows: tuple[tuple[float, float, float], ...]  # (params, flops, tokens), increasing
    loss_law: ParametricLaw
    source: str = ""
    param_count: str = TOTAL

    @property
    def parametric(self) -> ParametricLaw:
        return self.loss_law

    @property
    def unit(self) -> str:
        return self.loss_law.unit

    def _logs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, c, d = (np.log(np.array(col, dtype=float)) for col in zip(*self.rows, strict=True))
        return n, c, d

    @property
    def a(self) -> float:
        n, c, _ = self._logs()
        return float(np.polyfit(c, n, 1)[0])

    @property
    def b(self) -> float:
        _, c, d = self._logs()
        return float(np.polyfit(c, d, 1)[0])

    def _along(self, x: float, xs: np.ndarray, ys: np.ndarray, slope: float) -> float:
        # Inside the table: the published numbers, interpolated. Outside: a power law with the
        # table's fitted slope, anchored at the nearest row so the frontier stays continuous.
        if x < xs[0]:
            return float(ys[0] + slope * (x - xs[0]))
        if x > xs[-1]:
            return float(ys[-1] + slope * (x - xs[-1]))
        return float(np.interp(x, xs, ys))

    def optimal(self, flops: float) -> tuple[float, float]:
        n, c, d = self._logs()
        x = math.log(flops)
        return math.exp(self._along(x, c, n, self.a)), math.exp(self._along(x, c, d, self.b))

    def flops_for_params(self, params: float) -> float:
        n, c, _ = self._logs()
        return math.exp(self._along(math.log(params), n, c, 1.0 / self.a))

    def loss(self, params: float, tokens: float) -> float:
        return self.loss_law.loss(params, tokens)

    def describe(self) -> str:
        return (
            f"frontier N ∝ C^{self.a:.3f}, D ∝ C^{self.b:.3f} (published table, interpolated); "
            f"loss from {self.loss_law.name}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": "frontier", "a": self.a, "b": self.b, "rows": [list(r) for r in self.rows],
            "loss_law": self.loss_law.name, "param_count": self.param_count, "unit": self.unit,
            "source": self.source,
        }


class ScalingLaw(Protocol):
    name: str
    param_count: str
    source: str

    @property
    def unit(self) -> str: ...
    @property
    def parametric(self) -> ParametricLaw: ...
    @property
    def a(self) -> float: ...
    @property
    def b(self) -> float: ...
    def optimal(self, flops: float) -> tuple[float, float]: ...
    def flops_for_params(self, params: float) -> float: ...
    def loss(self, params: float, tokens: float) -> float: ...
    def describe(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


_HOFFMANN = "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models (arXiv:2203.15556)"

# The runs behind each fit, as the papers state them: Chinchilla trained "over 400 language models
# ranging from 70 million to over 16 billion parameters on 5 to 500 billion tokens" (the Epoch AI
# replication refits the same runs); Muennighoff et al. trained models of 10M to 9B parameters on up
# to 900B tokens (the smallest runs saw about 100M tokens).
_CHINCHILLA_RUNS = ((70e6, 16e9), (5e9, 500e9))
_MUENNIGHOFF_RUNS = ((10e6, 9e9), (100e6, 900e9))

CHINCHILLA = ParametricLaw(
    "chinchilla", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
    source=_HOFFMANN + ", approach 3 (Eq. 10)", fitted_on=_CHINCHILLA_RUNS,
)
EPOCH_2024 = ParametricLaw(
    "epoch2024", E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
    source="Besiroglu, Erdil, Barnett, You 2024, Chinchilla Scaling: A replication attempt (arXiv:2404.10102)",
    fitted_on=_CHINCHILLA_RUNS,
)
MUENNIGHOFF_2023 = ParametricLaw(
    "muennighoff2023", E=math.exp(0.6254804), A=math.exp(6.255414), B=math.exp(7.3049974),
    alpha=0.3526596, beta=0.3526596,
    source="Muennighoff et al. 2023, Scaling Data-Constrained Language Models (arXiv:2305.16264), C4 fit",
    fitted_on=_MUENNIGHOFF_RUNS,
)
CHINCHILLA_APPROACH1 = FrontierLaw(
    "chinchilla-approach1",
    rows=(
        (400e6, 1.92e19, 8.0e9), (1e9, 1.21e20, 20.2e9), (10e9, 1.23e22, 205.1e9), (67e9, 5.76e23, 1.5e12),
        (175e9, 3.85e24, 3.7e12), (280e9, 9.90e24, 5.9e12), (520e9, 3.43e25, 11.0e12),
        (1e12, 1.27e26, 21.2e12), (10e12, 1.30e28, 216.2e12),
    ),
    loss_law=EPOCH_2024,
    source=_HOFFMANN + ", approach 1 (Table 3)",
)
CHINCHILLA_APPROACH2 = FrontierLaw(
    "chinchilla-approach2",
    rows=(
        (400e6, 1.84e19, 7.7e9), (1e9, 1.20e20, 20.0e9), (10e9, 1.32e22, 219.5e9), (67e9, 6.88e23, 1.7e12),
        (175e9, 4.54e24, 4.3e12), (280e9, 1.18e25, 7.1e12), (520e9, 4.19e25, 13.4e12),
        (1e12, 1.59e26, 26.5e12), (10e12, 1.75e28, 292.0e12),
    ),
    loss_law=EPOCH_2024,
    source=_HOFFMANN + ", approach 2 (IsoFLOP profiles, Table A3)",
)

LAWS: dict[str, ScalingLaw] = {
    law.name: law
    for law in (CHINCHILLA, CHINCHILLA_APPROACH1, CHINCHILLA_APPROACH2, EPOCH_2024, MUENNIGHOFF_2023)
}


def get_law(spec: str) -> ScalingLaw:
    """A published law by name, or ``fitted:PATH`` for a law written by `tongues scaling fit`."""
    if spec.startswith("fitted:"):
        return load_fitted_law(spec[len("fitted:"):])
    if spec not in LAWS:
        raise TonguesError(f"unknown scaling law {spec!r} (known: {', '.join(LAWS)}, or fitted:PATH)")
    return LAWS[spec]


_REQUIRED = ("E", "A", "B", "alpha", "beta")


def load_fitted_law(path: str | Path) -> ParametricLaw:
    """Read a fitted law (JSON with E, A, B, alpha, beta); TonguesError naming the bad key."""
    path = Path(path)
    if not str(path):
        raise TonguesError("--law fitted:PATH needs a path, e.g. fitted:runs/sweep/law.json")
    if not path.is_file():
        raise TonguesError(f"{path}: fitted scaling-law file does not exist (write one with `tongues scaling fit`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise TonguesError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise TonguesError(f"{path}: a fitted law must be a JSON object with keys {', '.join(_REQUIRED)}")
    values: dict[str, float] = {}
    for key in _REQUIRED:
        if key not in data:
            raise TonguesError(f"{path}: key {key!r} is missing (a fitted law needs {', '.join(_REQUIRED)})")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TonguesError(f"{path}: key {key!r} must be a finite number, got {value!r}")
        if key != "E" and value <= 0:
            raise TonguesError(f"{path}: key {key!r} must be > 0, got {value!r}")
        if key == "E" and value < 0:
            raise TonguesError(f"{path}: key 'E' must be >= 0, got {value!r}")
        values[key] = float(value)
    param_count = data.get("param_count", TOTAL)
    if param_count not in PARAM_COUNTS:
        raise TonguesError(f"{path}: key 'param_count' must be one of {', '.join(PARAM_COUNTS)}, got {param_count!r}")
    unit = data.get("unit", NATS)
    if unit not in (NATS, BPB):
        raise TonguesError(f"{path}: key 'unit' must be {NATS!r} or {BPB!r}, got {unit!r}")
    name = data.get("name") or f"fitted:{path}"
    extra = {k: v for k, v in data.items() if k not in (*_REQUIRED, "name", "param_count", "unit")}
    fitted_on = None
    ranges = data.get("fitted_on")
    if isinstance(ranges, dict) and all(isinstance(ranges.get(k), list) and len(ranges[k]) == 2
                                        for k in ("params", "tokens")):
        fitted_on = (tuple(map(float, ranges["params"])), tuple(map(float, ranges["tokens"])))
    return ParametricLaw(
        str(name), **values, param_count=param_count, unit=unit, source=f"fitted: {path}", extra=extra,
        fitted_on=fitted_on,
    )


@dataclass(frozen=True)
class DataConstrainedLaw:
    """Muennighoff et al. 2023: `base` evaluated at effective parameters and effective tokens."""

    base: ParametricLaw
    rd_star: float = R_D_STAR
    rn_star: float = R_N_STAR

    def effective_tokens(self, tokens: float, unique: float) -> float:
        u = min(unique, tokens)
        repeats = tokens / u - 1.0
        return u + u * self.rd_star * (1.0 - math.exp(-repeats / self.rd_star))

    def effective_params(self, params: float, tokens: float, unique: float) -> float:
        u_n = min(params, self.base.params_for_tokens(min(unique, tokens)))
        excess = params / u_n - 1.0
        return u_n + u_n * self.rn_star * (1.0 - math.exp(-excess / self.rn_star))

    def loss(self, params: float, tokens: float, unique: float) -> float:
        """Predicted loss of N params trained on D tokens drawn (repeatedly) from U unique tokens."""
        return self.base.loss(self.effective_params(params, tokens, unique), self.effective_tokens(tokens, unique))

    def optimal(self, flops: float, unique: float) -> tuple[float, float]:
        """The (N, D) with 6 N D = `flops` that minimises the data-constrained loss."""
        from scipy.optimize import minimize_scalar

        _, d0 = self.base.optimal(flops)

        def objective(log_d: float) -> float:
            tokens = math.exp(log_d)
            return self.loss(flops / (6.0 * tokens), tokens, unique)

        # Coarse grid first (the objective has kinks where U_N and U_D switch), then Brent.
        grid = np.linspace(math.log(d0) - 7.0, math.log(d0) + 7.0, 561)
        values = [objective(x) for x in grid]
        i = int(np.argmin(values))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        best = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
        tokens = math.exp(best.x if best.fun <= values[i] else grid[i])
        return flops / (6.0 * tokens), tokens
