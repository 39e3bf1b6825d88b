"""Bootstrap confidence intervals and the paired bootstrap test between two models.

A metric is either a mean of per-item scores (accuracy, chrF per item) or a ratio of sums over
items (bits per byte = sum of NLL / (ln 2 * sum of bytes), so long documents weigh more, as they
do in the headline number). Resampling items with replacement gives a 95% percentile interval;
resampling the SAME items for two models gives the distribution of their difference (paired
bootstrap, Koehn 2004): a difference is significant when its 95% interval excludes zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass
class ItemScores:
    """Per-item numerators and (optional) denominators: metric = sum(num) / sum(den) or mean(num)."""

    num: np.ndarray
    den: np.ndarray | None = None
    scale: float = 1.0  # multiplies the metric (e.g. 1 / ln 2 for bits)

    def __post_init__(self) -> None:
        self.num = np.asarray(self.num, dtype=np.float64)
        if self.den is not None:
            self.den = np.asarray(self.den, dtype=np.float64)
            if self.den.shape != self.num.shape:
                raise ValueError("numerators and denominators differ in length")

    def __len__(self) -> int:
        return len(self.num)

    def value(self) -> float:
        return float(self._stat(np.arange(len(self.num))[None, :])[0])

    def _stat(self, idx: np.ndarray) -> np.ndarray:
        """The metric on each row of resampled item indices."""
        if self.den is None:
            return self.num[idx].mean(axis=1) * self.scale
        return self.num[idx].sum(axis=1) / self.den[idx].sum(axis=1) * self.scale


def bootstrap_ci(scores: ItemScores, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the metric over items."""
    if len(scores) < 2:
        value = scores.value() if len(scores) else float("nan")
        return value, value
    stats = _chunked(scores._stat, len(scores), samples, seed)
    low, high = np.quantile(stats, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


@dataclass
class PairedResult:
    """metric(a) - metric(b) on the same items, its 95% interval and a two-sided p-value."""

    difference: float
    ci: tuple[float, float]
    p_value: float
    significant: bool

    def to_dict(self) -> dict[str, object]:
        return {"difference": self.difference, "ci": list(self.ci), "p_value": self.p_value,
                "significant": self.significant}


def paired_bootstrap(a: ItemScores, b: ItemScores, samples: int = 1000, seed: int = 0) -> PairedResult:
    """Paired bootstrap of metric(a) - metric(b); a and b score the same items in the same order."""
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap needs the same items: {len(a)} vs {len(b)}")
    observed = a.value() - b.value()
    if len(a) < 2:
        return PairedResult(observed, (observed, observed), 1.0, False)

    def diff(idx: np.ndarray) -> np.ndarray:
        return a._stat(idx) - b._stat(idx)

    stats = _chunked(diff, len(a), samples, seed)
    low, high = (float(x) for x in np.quantile(stats, [ALPHA / 2, 1 - ALPHA / 2]))
    # Two-sided: how often a resample's difference lands on the other side of zero (or on it).
    p = min(1.0, 2 * min(float(np.mean(stats <= 0)), float(np.mean(stats >= 0))))
    return PairedResult(observed, (low, high), p, bool(low > 0 or high < 0))


def _chunked(fn, n: int, samples: int, seed: int, max_cells: int = 20_000_000) -> np.ndarray:
    """fn over `samples` resamples of n items, in chunks that keep the index matrix small."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, max_cells // max(n, 1))
    out = []
    for start in range(0, samples, per_chunk):
        rows = min(per_chunk, samples - start)
        out.append(fn(rng.integers(0, n, size=(rows, n))))
    return np.concatenate(out)
