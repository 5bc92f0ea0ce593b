"""The one definition of every latency statistic, used for points.csv and the report alike.

- Percentiles: nearest rank on the raw samples (numpy's ``inverted_cdf``: the smallest observed
  value with at least q% of the samples at or below it), never an interpolation between two
  measurements nobody observed.
- The median's 95% CI: percentile bootstrap (``scipy.stats.bootstrap``), 2,000 resamples, a fixed
  seed so a report is reproducible, computed in batches so that pooled points of thousands of
  samples stay small. Percentile rather than BCa: BCa's jackknife holds an n x n array on pooled
  points, and misbehaves on the ties a coarse timer produces.
- A tail percentile resting on fewer than ``MIN_TAIL_SAMPLES`` samples at or above it is *thin*,
  and ``tail_note`` says so in words ("p99 = max (n=30)").

Nothing here runs while bubbles are up: the orchestrator summarises a point after its bubbles stop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
PERCENTILES = (90, 95, 99)
#: A tail percentile resting on fewer samples than this (at or above it) is flagged thin.
MIN_TAIL_SAMPLES = 5
#: Recorded in every manifest, so a reader knows what the CI columns mean.
METHOD: dict[str, Any] = {
    "percentiles": "nearest rank (numpy method='inverted_cdf')",
    "median_ci": f"percentile bootstrap, {N_RESAMPLES} resamples, {CONFIDENCE:.0%}, seed {SEED}",
}

Values = Sequence[float] | npt.NDArray[np.floating[Any]]


def nearest_rank(values: Values, q: float) -> float:
    """The q-th percentile by nearest rank: the smallest value with at least q% of samples at or below it."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return math.nan
    return float(np.percentile(a, q, method="inverted_cdf"))


def tail_support(n: int, p: float) -> int:
    """How many samples lie at or above the nearest-rank p-th percentile of n samples."""
    if n == 0:
        return 0
    return n - max(1, math.ceil(p / 100.0 * n)) + 1


def median_ci(values: Values, confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
    """Percentile-bootstrap CI of the median, in batches; NaN for fewer than two samples."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return (math.nan, math.nan)
    if np.all(a == a[0]):
        return (float(a[0]), float(a[0]))
    res = stats.bootstrap(
        (a,),
        np.median,
        n_resamples=N_RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        batch=max(1, min(N_RESAMPLES, 4_000_000 // len(a))),
        rng=np.random.default_rng(seed),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def describe(values: Values) -> dict[str, Any]:
    """Every per-point statistic of one set of timed latencies (ms)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    out: dict[str, Any] = {"n": n}
    if n == 0:
        out.update(median_ms=math.nan, ci_low_ms=math.nan, ci_high_ms=math.nan, mean_ms=math.nan)
        out.update(min_ms=math.nan, max_ms=math.nan, tail_note="")
        for p in PERCENTILES:
            out[f"p{p}_ms"] = math.nan
            out[f"p{p}_thin"] = True
        return out
    lo, hi = median_ci(x)
    out.update(median_ms=float(np.median(x)), ci_low_ms=lo, ci_high_ms=hi, mean_ms=float(x.mean()))
    out.update(min_ms=float(x[0]), max_ms=float(x[-1]))
    notes = []
    for p in PERCENTILES:
        out[f"p{p}_ms"] = nearest_rank(x, p)
        support = tail_support(n, p)
        out[f"p{p}_thin"] = support < MIN_TAIL_SAMPLES
        if support == 1:
            notes.append(f"p{p} = max")
        elif support < MIN_TAIL_SAMPLES:
            notes.append(f"p{p} rests on {support} samples")
    out["tail_note"] = f"{'; '.join(notes)} (n={n})" if notes else ""
    return out
