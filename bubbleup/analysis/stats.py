"""Summary statistics of latency samples, as DESIGN.md section 3 prescribes.

Percentiles are nearest-rank on the raw samples (no interpolation between two
measurements nobody observed); the median carries a bootstrap 95% CI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def min_samples_for(q: float) -> int:
    """Smallest n for which the nearest-rank q-th percentile is not simply the sample maximum.

    p99 needs 100 samples, p95 needs 20, p90 needs 10: below that, "p99" is the max, and reports say so.
    """
    if not 0 < q < 100:
        raise ValueError("q must be strictly between 0 and 100")
    return math.ceil(100.0 / (100.0 - q) - 1e-9)


def nearest_rank(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile by nearest rank: the smallest value with at least q% of samples at or below it."""
    a = np.sort(np.asarray(values, dtype=float))
    if a.size == 0:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * a.size))
    return float(a[rank - 1])


def median_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap (BCa where possible, else percentile) confidence interval of the median."""
    a = np.asarray(values, dtype=float)
    if a.size < 3 or np.all(a == a[0]):
        m = float(np.median(a)) if a.size else math.nan
        return m, m
    from scipy.stats import bootstrap

    rng = np.random.default_rng(seed)
    try:
        res = bootstrap((a,), np.median, confidence_level=confidence, n_resamples=2000, rng=rng, method="BCa")
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isnan(low) or math.isnan(high):
            raise ValueError("degenerate BCa interval")
    except (ValueError, ZeroDivisionError):
        res = bootstrap((a,), np.median, confidence_level=confidence, n_resamples=2000, rng=rng, method="percentile")
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


def summarise(latencies_ms: Sequence[float]) -> dict[str, float]:
    """n, median and its CI, mean, nearest-rank p90/p95/p99, min, max."""
    a = np.asarray(latencies_ms, dtype=float)
    if a.size == 0:
        nan = math.nan
        return dict(n=0, median_ms=nan, ci_low_ms=nan, ci_high_ms=nan, mean_ms=nan, p90_ms=nan, p95_ms=nan,
                    p99_ms=nan, min_ms=nan, max_ms=nan)  # fmt: skip
    low, high = median_ci(a)
    return {
        "n": int(a.size),
        "median_ms": float(np.median(a)),
        "ci_low_ms": low,
        "ci_high_ms": high,
        "mean_ms": float(a.mean()),
        "p90_ms": nearest_rank(a, 90),
        "p95_ms": nearest_rank(a, 95),
        "p99_ms": nearest_rank(a, 99),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
    }
