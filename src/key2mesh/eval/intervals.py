"""Bootstrap confidence intervals over instants, and paired differences between two methods.

The views of one instant (several cameras filming the same pose) are not independent samples,
so resampling is by *cluster*: whole instants are drawn with replacement and the statistic is the
mean over all samples of the drawn instants (percentile bootstrap). Without cluster ids every
sample is its own cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean and its ``level`` percentile-bootstrap interval [low, high] (NaN bounds: no interval,
    from a single cluster or non-finite values; such an interval excludes nothing)."""

    mean: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def excludes_zero(self) -> bool:
        return self.defined and (self.low > 0 or self.high < 0)

    @property
    def defined(self) -> bool:
        return not (np.isnan(self.low) or np.isnan(self.high))

    def text(self, digits: int = 1) -> str:
        if not self.defined:
            return f"{self.mean:.{digits}f} [n/a]"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def row(self) -> list[float | None]:
        """[low, high] for JSON ([None, None] without an interval: JSON has no NaN)."""
        return [self.low, self.high] if self.defined else [None, None]


def _as_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _ids(clusters) -> np.ndarray:
    """(N,) cluster ids as given (integers or names), compared exactly: a cast through float64
    would merge distinct int64 ids beyond 2**53 and truncate fractional ones."""
    if isinstance(clusters, torch.Tensor):
        clusters = clusters.detach().cpu().numpy()
    return np.asarray(clusters).reshape(-1)


def bootstrap_mean(
    values,
    clusters=None,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean of ``values`` (N,) with its cluster-bootstrap interval; ``clusters`` (N,) ids, integers or
    names (e.g. the instant of each view; None: each sample alone). Vectorised: (resamples, G) draws of clusters,
    each draw's mean = Σ cluster sums / Σ cluster counts. One cluster, or a non-finite value (NaN
    or inf: the draws that miss it would give finite, meaningless bounds): NaN bounds (no interval)."""
    x = _as_array(values)
    if len(x) == 0:
        raise ValueError("no values to bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples}")
    ids = np.arange(len(x)) if clusters is None else _ids(clusters)
    if ids.shape != x.shape:
        raise ValueError(f"{len(ids)} cluster ids for {len(x)} values")
    _, inverse = np.unique(ids, return_inverse=True)
    sums = np.bincount(inverse, weights=x)
    counts = np.bincount(inverse).astype(np.float64)
    if len(sums) < 2 or not np.isfinite(x).all():
        # one cluster: every resample is that cluster, its spread is not an uncertainty
        return Interval(float(x.mean()), float("nan"), float("nan"), level)
    draws = np.random.default_rng(seed).integers(0, len(sums), (resamples, len(sums)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(x.mean()), float(low), float(high), level)


def paired_difference(
    a, b, clusters=None, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Mean of ``a − b`` (per-sample errors of two methods on the same samples) with its
    cluster-bootstrap interval: method a is better than b only where the interval lies below 0."""
    a, b = _as_array(a), _as_array(b)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {len(a)} vs {len(b)}")
    return bootstrap_mean(a - b, clusters, level, resamples, seed)
