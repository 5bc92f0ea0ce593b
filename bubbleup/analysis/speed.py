"""Latency at one CPU speed: a run read as if the CPU had run at a reference speed throughout.

Every timed inference carries the worker's CPU speed probe taken just before it (``speed_ns``,
:mod:`bubbleup.machine.speed`: thread-CPU nanoseconds of a fixed interpreter loop). On our VMs the
CPU changes speed by 15-30% for seconds at a time with nothing of ours running, and latency moves
with it; the probe sees that and nothing of time-sharing or cache pressure. A speed-adjusted run
scales each inference by ``(reference_ns / speed_ns) ** beta``: the latency it would have had at the
speed where the probe takes ``reference_ns``, where ``beta`` (:func:`elasticity`) is how far the
workload's latency followed the probe between repeats (near 1 when the CPU's own speed moves; far
less when another tenant's cache or memory traffic slows the loop and the workload unequally).
Everything downstream (summaries, cliffs, resampling, compare) then works on it unchanged, since it
is an ordinary :class:`Run` with other latencies.

Where it is used:

- :func:`bubbleup.analysis.compare.compare_runs` adjusts both runs to A's reference, so one point
  measured twice is compared at one speed. What the co-located load itself does to the CPU's speed
  (a governor, a shared turbo budget, heat) is the same at the same point of both runs and cancels.
- :func:`for_verdicts`: a run's own verdicts (cliffs and their resampled distribution, falls, sensitivity
  and CPU curves) are judged on the run adjusted to its own median speed, *unless* the probe moved with the
  pressure (:func:`facts`: a permutation test of Spearman's rank correlation of per-(repeat, value) probe
  medians with the value, p < 0.01 and more than 3% between the least and the most pressure), or the run
  has too few points for that test to ever reach p < 0.01 (one repeat of five values cannot; a fall then counts
  only where raw and adjusted latencies both show it, :func:`bubbleup.analysis.monotone.falls_in`). On a device
  whose governor or heat answers the load, the speed change is part of what the load does, and the raw
  latencies are judged; on a VM whose speed wanders by itself, it is noise, and removed.

Tables, figures and summaries show raw latencies: what the workload experienced. What is derived from
adjusted ones says so: the verdict sentences (a cliff's jump, a fall's milliseconds) and the sensitivity
curves of a run whose report says its verdicts are at one speed.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd

from bubbleup.store.reader import Run

COLUMN = "speed_ns"
T = TypeVar("T")


def _timed(samples: pd.DataFrame) -> pd.Series:
    """Which rows of ``samples`` are timed inferences (warm-ups carry probes too, but are never judged)."""
    return samples["phase"].astype(str) == "timed"


def probed(samples: pd.DataFrame) -> bool:
    """Whether every timed sample carries a speed probe (runs older than the probe do not)."""
    if COLUMN not in samples or samples.empty:
        return False
    timed = samples.loc[_timed(samples), COLUMN]
    return bool(len(timed)) and bool((timed > 0).all())


def median_probe(samples: pd.DataFrame) -> float:
    """The typical probe of these samples: the median over the timed ones (NaN without probes)."""
    if not probed(samples):
        return math.nan
    return float(np.median(samples.loc[_timed(samples), COLUMN]))


def at_speed(samples: pd.DataFrame, reference: float, beta: float = 1.0) -> pd.DataFrame:
    """``samples`` with every timed latency scaled to the speed where the probe takes ``reference`` ns, by
    ``(reference / probe) ** beta`` (the workload's :func:`elasticity`; 1: latency in proportion to the probe's
    time); the raw latency kept in ``latency_raw_ms``. ``samples`` itself when they have no probes, no reference
    is given, ``beta`` is 0, or they are at that speed already (adjusting again would copy them to change
    nothing)."""
    if not probed(samples) or not reference > 0 or beta == 0:
        return samples
    timed = _timed(samples)
    if (samples.loc[timed, COLUMN] == reference).all():
        return samples
    out = samples.copy()
    out["latency_raw_ms"] = out["latency_ms"]
    factor = pd.Series(1.0, index=out.index)
    factor[timed] = (reference / out.loc[timed, COLUMN]) ** beta
    out["latency_ms"] = out["latency_ms"] * factor
    out[COLUMN] = out[COLUMN].astype(float)
    out.loc[timed, COLUMN] = reference  # now at that speed: adjusting again only rescales uniformly
    return out


def _repeat_logs(samples: pd.DataFrame) -> pd.DataFrame:
    """Per (value, workload, setting, repeat) of timed samples: log median latency and log median probe, each
    less its step's mean over the step's repeats (steps measured in one repeat only dropped)."""
    timed = samples[_timed(samples) & (samples["latency_ms"] > 0)]
    if COLUMN not in timed:
        timed = timed.assign(**{COLUMN: math.nan})
    per = timed.groupby(["value", "workload", "setting", "repeat"])[["latency_ms", COLUMN]].median()
    logs = np.log(per.where(per > 0))
    steps = logs.groupby(level=["value", "workload", "setting"])
    return (logs - steps.transform("mean"))[steps["latency_ms"].transform("size") >= 2]


def repeat_spread(samples: pd.DataFrame, beta: float = 0.0) -> float:
    """How far apart the repeats of one point lie: the pooled standard deviation of the log of each repeat's
    median latency, within every (value, workload, setting) measured in two or more repeats (NaN with none),
    with each repeat scaled by its median probe to the power ``beta`` (0: as measured)."""
    return _spread(_repeat_logs(samples), beta)


def _spread(logs: pd.DataFrame, beta: float) -> float:
    """:func:`repeat_spread` of a run's :func:`_repeat_logs`."""
    if logs.empty:
        return math.nan
    level = logs["latency_ms"] - beta * logs[COLUMN].fillna(0.0) if beta else logs["latency_ms"]
    within = (level**2).groupby(level=["value", "workload", "setting"]).sum() / (
        level.groupby(level=["value", "workload", "setting"]).size() - 1)
    return float(np.sqrt(within.mean()))


#: The elasticity's prior, 1 (latency in proportion to the probe's time), weighs as much as repeats whose probes
#: moved this much (sd of log probe): a run whose probes barely moved between repeats cannot tell its elasticity,
#: and keeps the prior, while one whose probes moved 10% (a noisy spell) is judged by its own repeats.
PRIOR_SD = 0.01
#: Fewer repeat deviations than this (a step's repeats less one, summed over its steps) fit no slope: a test's
#: two repeats of one step gave 0.63 from two such deviations a run. Such runs scale in full or not at all.
MIN_DEVIATIONS = 10


@dataclass(frozen=True)
class Elasticity:
    """How far the workload's latency follows the probe between repeats: ``beta``, the least-squares slope of
    each repeat's log median latency on its log median probe, within each step (one setting at one point), pooled,
    pulled toward 1 by :data:`PRIOR_SD`, kept in [0, 1] and rounded to 0.01; with the repeats' spread as measured
    and at it."""

    beta: float = 1.0
    told: bool = False  # two repeats of some step, with probes: else beta is the prior
    #: Whether beta is a fitted slope; False: too few repeat deviations (:data:`MIN_DEVIATIONS`) to fit one,
    #: so beta is 1 or 0, whichever put the repeats closer.
    fitted: bool = False
    spread_raw: float = math.nan
    spread_scaled: float = math.nan

    @property
    def why_zero(self) -> str:
        """Why ``beta`` is 0, in words for the report and compare: fitted as 0, or too few repeats to fit a slope."""
        return ("fitted elasticity 0" if self.fitted else
                "too few repeats to fit a slope, and scaling in full put the repeats further apart")  # fmt: skip


def elasticity(*runs: pd.DataFrame) -> Elasticity:
    """The :class:`Elasticity` of one run's samples, or of several runs' together (compare's two: one workload
    on one machine follows its CPU's speed alike in both; each run's steps are its own).

    The probe times a compute loop. When the CPU itself changes speed (15-30% for seconds at a time on our VMs),
    latency follows the loop's time closely (elasticity near 1: on 2026-12-07 scaling by it cut the spread of a
    point's median across runs 4-5x). When what slows the workload is something the loop feels more (another
    tenant's cache or memory traffic in a noisy spell), it follows by far less: in the six runs of sets G and H
    the fitted slope was 0.19-0.37, full scaling put the repeats 1.7-3.2x further apart than as measured, and
    scaling by the fitted slope 0.7-0.8x as far."""
    parts = [_repeat_logs(s) for s in runs if probed(s)]
    logs = pd.concat(parts, keys=range(len(parts))) if parts else pd.DataFrame()
    if logs.empty or len(parts) < len(runs):
        return Elasticity()
    x, y = logs[COLUMN].to_numpy(), logs["latency_ms"].to_numpy()
    prior = len(x) * PRIOR_SD**2
    # to two decimals, as it is known at best, so a probe that the workload did not follow at all reads 0 (raw)
    beta = round(float(np.clip((np.dot(x, y) + prior) / (np.dot(x, x) + prior), 0.0, 1.0)), 2)
    # each step's repeats give (repeats - 1) independent deviations from its mean: too few, and the slope is noise
    freedom = len(logs) - logs.groupby(level=[0, "value", "workload", "setting"]).ngroups
    fitted = freedom >= MIN_DEVIATIONS
    if not fitted:  # then only in full or not at all, whichever puts the repeats closer
        beta = 1.0
    raw = float(np.mean([_spread(p, 0.0) for p in parts]))  # one part per run: every run is probed here
    scaled = float(np.mean([_spread(p, beta) for p in parts]))
    if scaled > raw:  # a slope from the samples' noise alone: scaling by it puts the repeats further apart
        return Elasticity(0.0, True, fitted, raw, raw)
    return Elasticity(beta, True, fitted, raw, scaled)


def at_fitted_speed(samples: pd.DataFrame, reference: float) -> pd.DataFrame:
    """The samples a judgement of the run so far reads: :func:`at_speed` by the run's own :func:`elasticity`."""
    return at_speed(samples, reference, elasticity(samples).beta)


def has_speed(run: Run) -> bool:
    """Whether every timed sample of ``run`` carries a speed probe."""
    return probed(run.samples)


def reference_ns(run: Run) -> float:
    """The run's typical probe: the median over its timed samples (NaN without probes)."""
    return median_probe(run.samples)


def adjusted(run: Run, reference: float, beta: float = 1.0) -> Run:
    """``run`` with its samples :func:`at_speed` ``reference`` (by elasticity ``beta``); ``run`` itself when that
    changes nothing."""
    samples = at_speed(run.samples, reference, beta)
    return run if samples is run.samples else dataclasses.replace(run, samples=samples)


#: A trend of the probe with pressure counts when significant at this level ...
TREND_P = 0.01
#: ... and the probe's median differs by more than this between the least and the most pressure.
TREND_EFFECT = 0.03


@dataclass(frozen=True)
class SpeedFacts:
    """What the probes say about a run's CPU speed, in a form the report can print."""

    probed: bool
    reference_ns: float = math.nan
    low: float = math.nan  # 5th and 95th percentile of the timed samples' probes, over the reference
    high: float = math.nan
    rho: float = math.nan  # Spearman's rho of per-(repeat, value) probe medians against the value
    p: float = math.nan
    effect: float = math.nan  # probe median at the most pressure / at the least, minus 1
    follows_pressure: bool = False
    schedule: bool = False  # a schedule's one point changes its pressure while timed: nothing to test against
    #: Fewer (repeat, value) points than the trend test needs to reach p < TREND_P at all: it cannot tell.
    too_few: int = 0
    #: How far latency followed the probe between repeats (:func:`elasticity`), with the repeats' spread as
    #: measured and scaled by it: 0, the probe did not track what slowed the workload.
    elasticity: Elasticity = dataclasses.field(default_factory=Elasticity)

    @property
    def adjusts(self) -> bool:
        """Whether verdicts are judged at one speed (:func:`for_verdicts`): only when the trend test could
        have seen the speed follow the pressure, and did not, and latency follows the probe at all."""
        return (self.probed and not self.follows_pressure and not self.schedule and not self.too_few
                and self.elasticity.beta > 0)  # fmt: skip

    def sentence(self) -> str:
        if not self.probed:
            return ("No CPU speed probes (no inference timed, or a run older than them): verdicts are judged on raw "
                    "latencies.")  # fmt: skip
        spread = (f"The CPU's speed probe ranged {1 / self.high:.2f}-{1 / self.low:.2f}x its median speed over the "
                  f"timed samples (5th-95th percentile)")  # fmt: skip
        if self.schedule:
            return f"{spread}; a schedule's pressure changes while it is timed, so its latencies are judged raw."
        if self.too_few:
            return (f"{spread}; {self.too_few} (repeat, pressure) points are too few to tell whether it followed the "
                    f"pressure, so verdicts are judged on raw latencies, and a fall only where it is also there at "
                    f"one speed (more repeats or values let it tell).")
        if self.follows_pressure:
            return (f"{spread}, and it followed the pressure ({self.effect:+.0%} probe time from the least to the "
                    f"most; Spearman rho {self.rho:.2f}, p {self.p:.2g}): the load changes the CPU's own speed here "
                    f"(a governor, a shared turbo budget, heat), which is part of what it does, so verdicts are "
                    f"judged on raw latencies.")  # fmt: skip
        e = self.elasticity
        if e.beta == 0:
            return (f"{spread}, independently of the pressure, but latency did not follow it between repeats "
                    f"({e.why_zero}; the repeats {e.spread_raw:.1%} apart as measured): the probe did not track "
                    f"what slowed the workload, so verdicts and compare use raw latencies.")  # fmt: skip
        how = (f"scaled to the median speed by the probe to the power {e.beta:.2f}, how far latency followed it "
               f"between repeats (the repeats {e.spread_scaled:.1%} apart so, {e.spread_raw:.1%} as measured)"
               if e.fitted and e.beta < 1 else "scaled to the median speed")  # fmt: skip
        return (f"{spread}, independently of the pressure: verdicts (cliffs, falls, curves) are judged with each "
                f"inference {how}; the latencies shown are raw.")


def rank_trend(x: np.ndarray, y: np.ndarray, n_permutations: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Spearman's rho of ``y`` against ``x`` and its two-sided permutation p-value. A permutation test, not
    the t approximation: a run of one repeat has only a few points, and three in perfect order is what
    chance gives one time in three, not "p = 0"."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()  # average ranks, as scipy's rankdata
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return 0.0, 1.0
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = np.sqrt((rx**2).sum() * (ry**2).sum())
    rho = float((rx * ry).sum() / norm)
    shuffled = ry[np.argsort(np.random.default_rng(seed).random((n_permutations, len(ry))), axis=1)]
    null = (shuffled * rx).sum(axis=1) / norm
    return rho, float((1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + n_permutations))


def smallest_p(x: np.ndarray) -> float:
    """The smallest two-sided p-value a rank-trend test can reach against ``x``: 2 / the distinct orderings of
    ``x``'s values (equal values, the repeats of one pressure, are interchangeable)."""
    orderings = math.factorial(len(x))
    for count in np.unique(x, return_counts=True)[1]:
        orderings //= math.factorial(int(count))
    return min(1.0, 2.0 / orderings)


#: facts() and for_verdicts() per run object (a report asks several times; each answer costs a copy of the
#: samples and thousands of permutations), dropped when the run is.
_CACHE: dict[tuple[str, int], tuple[weakref.ref[Run], object]] = {}


def _cached(kind: str, run: Run, make: Callable[[Run], T]) -> T:
    key = (kind, id(run))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is run:
        return cast(T, hit[1])
    value = make(run)

    def forget(_gone: weakref.ref[Run], key: tuple[str, int] = key, cache: dict[tuple[str, int], Any] = _CACHE) -> None:
        cache.pop(key, None)  # the dict itself, not the module global: at exit globals may be gone first

    _CACHE[key] = (weakref.ref(run, forget), value)
    return value


def facts(run: Run) -> SpeedFacts:
    """The run's speed facts: the probes' spread and whether they trend with the pressure."""
    return _cached("facts", run, _facts)


def _facts(run: Run) -> SpeedFacts:
    if not has_speed(run):
        return SpeedFacts(False)
    ref = reference_ns(run)
    timed = run.samples[_timed(run.samples)]
    low, high = (float(q) / ref for q in np.percentile(timed[COLUMN], [5, 95]))
    per = timed.groupby(["repeat", "value"])[COLUMN].median().reset_index()
    if run.axis == "schedule":  # one point whose pressure changes while it is timed: nothing to test it against
        return SpeedFacts(True, ref, low, high, schedule=True)
    if per["value"].nunique() < 2:
        return SpeedFacts(True, ref, low, high)
    if smallest_p(per["value"].to_numpy(float)) > TREND_P:
        return SpeedFacts(True, ref, low, high, too_few=len(per))
    rho, p = rank_trend(per["value"].to_numpy(float), per[COLUMN].to_numpy(float))
    by_value = per.groupby("value")[COLUMN].median()
    effect = float(by_value.iloc[-1] / by_value.iloc[0] - 1)
    follows = bool(p < TREND_P and abs(effect) > TREND_EFFECT)
    return SpeedFacts(True, ref, low, high, float(rho), float(p), effect, follows,
                      elasticity=elasticity(run.samples))  # fmt: skip


def for_verdicts(run: Run) -> Run:
    """The run verdicts are judged on: adjusted to its own median speed when its probes do not follow the
    pressure (:class:`SpeedFacts`), else as measured."""

    def judged(run: Run) -> Run | None:  # None for "as measured": the cache must not hold the run itself
        f = facts(run)
        return adjusted(run, f.reference_ns, f.elasticity.beta) if f.adjusts else None

    found = _cached("verdicts", run, judged)
    return found if found is not None else run


def point_speed(run: Run) -> dict[tuple[float, str], float]:
    """Per (value, setting): the median probe over the point's timed samples (empty without probes)."""
    if not has_speed(run):
        return {}
    timed = run.samples[_timed(run.samples)]
    medians = timed.groupby(["value", "setting"])[COLUMN].median()
    return {(float(v), str(st)): float(p) for (v, st), p in medians.items()}
