"""The one definition of every latency statistic, used for points.csv and the report alike.

- Percentiles: nearest rank on the raw samples (numpy's ``inverted_cdf``: the smallest observed
  value with at least q% of the samples at or below it), never an interpolation between two
  measurements nobody observed.
- The median's 95% CI: distribution-free, from order statistics (the interval between the j-th
  smallest and j-th largest sample, j from the Binomial(n, 1/2) distribution, so coverage is at
  least 95% whatever the latency distribution). Exact, deterministic and cheap. Below 6 samples no
  pair of order statistics reaches 95%, and the CI is the whole range (min, max). (Runs before this
  change used a percentile bootstrap; the manifest's ``statistics`` says which.)
- The precision rule's CI (``batch_halfwidth``): of the step's IQM, by batch means over batches one
  bubble duty period long (single samples where no bubble is duty-cycled), because samples inside a
  period are not independent; Tukey-McLaughlin's trimmed-mean interval over the batch values. The worker evaluates it
  between inferences to decide when a step has enough samples, and points.csv's ``halfwidth`` is
  the same figure as the step ended.
- A tail percentile resting on fewer than ``MIN_TAIL_SAMPLES`` samples at or above it is *thin*,
  and ``tail_note`` says so in words ("p99 = max (n=30)").
- The interquartile mean (IQM, ``"iqm"``): the mean of the middle half of the samples (scipy's
  ``trim_mean(x, 0.25)``). What ``compare`` compares: where CPU demand just passes the cores an inference
  is preempted or not, latency has two modes, and the median sits in whichever holds half the
  inferences; a share moving from 48% to 52% between runs moves the median from one mode to the
  other. The IQM moves with the share, smoothly, and still ignores the outer quarters.
- Top-1 accuracy: the share of *distinct samples* answered correctly, each sample counted once however
  often it was inferred (a deterministic network gives a repeated frame the same answer, so repeats add
  no evidence), with the Wilson score interval at 95% over that many samples (``top1_n``).

Nothing here runs while bubbles are up: the orchestrator summarises a point after its bubbles stop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

# At import, not on first use: the worker imports this module before it loads a workload, and its first
# precision check would otherwise pay the import between two timed inferences. scipy.special, not scipy.stats:
# the worker needs only Student's t quantile, and scipy.stats cost every worker 0.5 s more to start (and its
# memory, counted in the workload's).
from scipy.special import stdtrit

CONFIDENCE = 0.95
PERCENTILES = (90, 95, 99)
#: A tail percentile resting on fewer samples than this (at or above it) is flagged thin.
MIN_TAIL_SAMPLES = 5
#: Recorded in every manifest, so a reader knows what the CI columns mean.
METHOD: dict[str, Any] = {
    "percentiles": "nearest rank (numpy method='inverted_cdf')",
    "median_ci": f"order statistics (binomial, distribution-free), at least {CONFIDENCE:.0%}; (min, max) below 6",
    "halfwidth": f"the IQM's {CONFIDENCE:.0%} CI by batch means (Tukey-McLaughlin over batch IQMs), over the IQM",
}

Values = Sequence[float] | npt.NDArray[np.floating[Any]]
#: A point statistic: a percentile (50: the median), or the interquartile mean.
Statistic = float | Literal["iqm"]
IQM: Literal["iqm"] = "iqm"


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


def samples_needed(p: float) -> int:
    """The fewest samples whose nearest-rank p-th percentile rests on MIN_TAIL_SAMPLES at or above it (p99: 400);
    searched on :func:`tail_support` itself, so the two never disagree."""
    n = MIN_TAIL_SAMPLES
    while tail_support(n, p) < MIN_TAIL_SAMPLES:
        n += 1
    return n


@functools.lru_cache(maxsize=4096)
def rank_bounds(n: int, confidence: float = CONFIDENCE) -> int:
    """The 1-based rank j whose order statistics (x_(j), x_(n-j+1)) bracket the median with at least
    ``confidence``: the largest j with P(Binomial(n, 1/2) <= j-1) <= (1 - confidence) / 2; 1 when none."""
    alpha = (1.0 - confidence) / 2.0
    if n > 2000:  # the normal approximation, O(1): at most one rank off here, and then wider, never narrower
        return max(1, math.floor(n / 2.0 - 0.5 - _z(confidence) * math.sqrt(n) / 2.0) + 1)
    log_half_n = -n * math.log(2.0)
    cdf, j = 0.0, 0
    for k in range(n // 2 + 1):  # cdf = P(B <= k)
        cdf += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half_n)
        if cdf > alpha:
            break
        j = k + 1
    return max(1, j)


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def median_ci_sorted(x: Values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The CI of the median from already sorted values; NaN for fewer than two."""
    n = len(x)
    if n < 2:
        return (math.nan, math.nan)
    j = rank_bounds(n, confidence)
    return (float(x[j - 1]), float(x[n - j]))


def median_ci(values: Values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free CI of the median (see the module docstring); NaN for fewer than two samples."""
    return median_ci_sorted(np.sort(np.asarray(values, dtype=float)), confidence)


#: The precision rule's fewest batches: a t-interval over fewer says little about its own width.
MIN_BATCHES = 10


@functools.lru_cache(maxsize=256)
def t_quantile(df: int, confidence: float) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``df`` degrees of freedom."""
    return float(stdtrit(df, 0.5 + confidence / 2.0))  # scipy.stats.t.ppf, without importing scipy.stats


def batch_halfwidth(latencies: Values, ends_s: Values, batch_s: float, confidence: float = CONFIDENCE,
                    min_batches: int = MIN_BATCHES) -> float:  # fmt: skip
    """Half the 95% CI of a step's IQM over the IQM, by batch means: the step's time is cut into consecutive
    batches of ``batch_s`` (a bubble's duty period; 0: every sample a batch of its own), each batch's IQM is
    one value, and the interval is the Tukey-McLaughlin one of those values' interquartile mean (winsorised
    standard error, Student's t on the middle half's degrees of freedom); inf below ``min_batches`` complete
    batches.

    ``ends_s`` are the inferences' end times in seconds on a clock that never goes back.

    Why batches, not samples: under a duty-cycled bubble the inferences of one period are all slowed or all
    spared, so neighbouring samples are not independent, and an interval that treats them as independent
    claims about twice the precision the step has (README "Samples chosen by precision"). Batches a period
    long are about independent of each other. Why trimmed over the batches too: with single-sample batches
    (no duty cycle) it is the IQM's own interval, which one 10x outlier does not widen as it would a mean's.
    """
    lat = np.asarray(latencies, dtype=float)
    ends = np.asarray(ends_s, dtype=float)
    if lat.size < 2:
        return math.inf
    if batch_s > 0:
        start = ends[0] - lat[0] / 1000.0  # the first timed inference's start
        which = np.floor((ends - start) / batch_s).astype(int)  # non-decreasing: ends are in order
        complete = int(np.searchsorted(which, which[-1]))  # the samples before the last batch, still filling
        cuts = np.flatnonzero(np.diff(which[:complete])) + 1
        values = np.array([iqm(b) for b in np.split(lat[:complete], cuts)]) if complete else lat[:0]
    else:
        values = lat
    k = values.size
    centre = float(iqm(lat))
    g = k // 4  # trimmed from each end, as iqm() does
    if k < max(4, min_batches) or centre <= 0:
        return math.inf
    ranked = np.sort(values)
    winsorised = np.clip(ranked, ranked[g], ranked[k - g - 1])
    se = float(np.std(winsorised, ddof=1)) / ((1 - 2 * g / k) * math.sqrt(k))
    return t_quantile(k - 2 * g - 1, confidence) * se / centre


def wilson(correct: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / n``: keeps inside [0, 1] and is not degenerate at
    0% or 100% (the normal approximation is, and a network right on every one of 64 frames is not 100%)."""
    if n <= 0:
        return math.nan, math.nan
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def top1(samples: Values, correct: Sequence[float]) -> dict[str, float]:
    """``top1``, its Wilson interval and ``top1_n`` (distinct samples) from per-inference sample indices and
    correctness (NaN: unknown, left out). Without a sample index (NaN), each inference counts as its own."""
    known = [(s, c) for s, c in zip(samples, correct, strict=True) if not math.isnan(c)]
    if not known:
        return {"top1": math.nan, "top1_low": math.nan, "top1_high": math.nan, "top1_n": 0}
    per: dict[Any, list[float]] = {}
    for i, (s, c) in enumerate(known):
        per.setdefault(("i", i) if s is None or math.isnan(s) or s < 0 else s, []).append(c)
    shares = [sum(v) / len(v) for v in per.values()]
    n = len(shares)
    k = float(sum(shares))
    lo, hi = wilson(k, n)
    return {"top1": k / n, "top1_low": lo, "top1_high": hi, "top1_n": n}


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


def iqm(x: npt.NDArray[np.floating[Any]] | Values, axis: int = -1) -> Any:
    """The interquartile mean along ``axis``: the mean of the samples ranked n//4 .. n-n//4-1 (scipy's
    ``trim_mean(x, 0.25)``); the plain mean below 4 samples."""
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    cut = n // 4
    if cut == 0:
        return np.mean(x, axis=axis)
    middle = np.partition(x, (cut, n - cut - 1), axis=axis)  # ranks cut..n-cut-1 land between the two
    return np.mean(np.take(middle, np.arange(cut, n - cut), axis=axis), axis=axis)


def _statistic(x: npt.NDArray[np.floating[Any]], q: Statistic, axis: int = -1) -> Any:
    """The median (numpy's, midpoint of the two middle samples) for q = 50, the interquartile mean for
    ``"iqm"``, else the nearest-rank percentile; along ``axis``."""
    if q == IQM:
        return iqm(x, axis)
    return np.median(x, axis=axis) if q == 50 else np.percentile(x, q, axis=axis, method="inverted_cdf")


def replicate_statistic(repeats: Sequence[npt.NDArray[np.floating[Any]]], q: Statistic = 50) -> float:
    """The mean over repeats of each repeat's statistic ``q`` (the median by default).

    Each repeat, not each sample, is one replicate of a run: samples inside one repeat share its
    worker, memory layout and the VM's speed state of the moment.
    """
    return float(np.mean([_statistic(np.asarray(r, dtype=float), q) for r in repeats])) if repeats else math.nan


def hierarchical_resamples(repeats: Sequence[npt.NDArray[np.floating[Any]]], rng: np.random.Generator, n: int,
                           q: Statistic = 50) -> npt.NDArray[np.floating[Any]]:  # fmt: skip
    """``n`` bootstrap replicates of :func:`replicate_statistic`: repeats drawn with replacement, then
    samples within each drawn repeat (one bootstrap statistic per repeat and resample, vectorised)."""
    boot = np.stack([_statistic(np.asarray(r, dtype=float)[rng.integers(0, len(r), size=(n, len(r)))], q, axis=1)
                     for r in repeats])  # (R, n)  # fmt: skip
    pick = rng.integers(0, len(repeats), size=(n, len(repeats)))  # which repeats each resample draws
    return np.asarray(boot[pick, np.arange(n)[:, None]].mean(axis=1))
