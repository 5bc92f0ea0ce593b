"""Latency at one CPU speed: a run read as if the CPU had run at a reference speed throughout.

Every timed inference carries the worker's CPU speed probe taken just before it (``speed_ns``,
:mod:`bubbleup.machine.speed`: thread-CPU nanoseconds of a fixed interpreter loop). On our VMs the
CPU changes speed by 15-30% for seconds at a time with nothing of ours running, and latency moves
with it; the probe sees that and nothing of time-sharing or cache pressure. A speed-adjusted run
scales each inference by ``reference_ns / speed_ns``: the latency it would have had at the speed
where the probe takes ``reference_ns``. Everything downstream (summaries, cliffs, resampling,
compare) then works on it unchanged, since it is an ordinary :class:`Run` with other latencies.

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


def at_speed(samples: pd.DataFrame, reference: float) -> pd.DataFrame:
    """``samples`` with every timed latency scaled to the speed where the probe takes ``reference`` ns (the
    raw latency kept in ``latency_raw_ms``); ``samples`` itself when they have no probes, no reference is
    given, or they are at that speed already (adjusting again would copy them to change nothing)."""
    if not probed(samples) or not reference > 0:
        return samples
    timed = _timed(samples)
    if (samples.loc[timed, COLUMN] == reference).all():
        return samples
    out = samples.copy()
    out["latency_raw_ms"] = out["latency_ms"]
    factor = pd.Series(1.0, index=out.index)
    factor[timed] = reference / out.loc[timed, COLUMN]
    out["latency_ms"] = out["latency_ms"] * factor
    out[COLUMN] = out[COLUMN].astype(float)
    out.loc[timed, COLUMN] = reference  # now at that speed: adjusting again only rescales uniformly
    return out


def repeat_spread(samples: pd.DataFrame) -> float:
    """How far apart the repeats of one point lie: the pooled standard deviation of the log of each repeat's
    median latency, within every (value, workload, setting) measured in two or more repeats (NaN with none)."""
    timed = samples[_timed(samples) & (samples["latency_ms"] > 0)]
    medians = timed.groupby(["value", "workload", "setting", "repeat"])["latency_ms"].median()
    within = np.log(medians).groupby(level=["value", "workload", "setting"]).var(ddof=1).dropna()
    return float(np.sqrt(within.mean())) if len(within) else math.nan


def scatters(samples: pd.DataFrame, reference: float) -> tuple[bool, float, float]:
    """(whether scaling by the probe spreads the repeats further apart than they were as measured, their spread
    as measured, and scaled). The probe times a compute loop; where what slows the workload is something the
    loop does not feel alike (another tenant's cache or memory traffic), the correction scales by the wrong
    factor: on 2026-12-07 it made the repeats 2.1-2.7x further apart, and compare flagged 6-7% of an A/A pair's
    points where raw latencies gave 0-4%. Not told (False) without two repeats of some point."""
    return _scaling(samples, reference)[1:]


def at_speed_unless_it_scatters(samples: pd.DataFrame, reference: float) -> pd.DataFrame:
    """The samples a judgement of the run so far reads: at one speed (:func:`at_speed`), unless that spreads the
    repeats further apart (:func:`scatters`); as measured then. The samples are scaled once for both."""
    scaled, worse, _, _ = _scaling(samples, reference)
    return samples if worse else scaled


def _scaling(samples: pd.DataFrame, reference: float) -> tuple[pd.DataFrame, bool, float, float]:
    """(the samples at one speed, and :func:`scatters`'s answer for them)."""
    scaled = at_speed(samples, reference)
    raw, spread = repeat_spread(samples), repeat_spread(scaled)
    told = not (math.isnan(raw) or math.isnan(spread))
    return scaled, (told and spread > raw), raw, spread


def has_speed(run: Run) -> bool:
    """Whether every timed sample of ``run`` carries a speed probe."""
    return probed(run.samples)


def reference_ns(run: Run) -> float:
    """The run's typical probe: the median over its timed samples (NaN without probes)."""
    return median_probe(run.samples)


def adjusted(run: Run, reference: float) -> Run:
    """``run`` with its samples :func:`at_speed` ``reference``; ``run`` itself when that changes nothing."""
    samples = at_speed(run.samples, reference)
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
    #: Scaling by the probe spread the repeats further apart (:func:`scatters`), with the spreads as measured
    #: and scaled: the probe did not track what slowed the workload, and correcting by it adds noise.
    scatters: bool = False
    spread_raw: float = math.nan
    spread_scaled: float = math.nan

    @property
    def adjusts(self) -> bool:
        """Whether verdicts are judged at one speed (:func:`for_verdicts`): only when the trend test could
        have seen the speed follow the pressure, and did not, and the correction brings the repeats closer."""
        return (self.probed and not self.follows_pressure and not self.schedule and not self.too_few
                and not self.scatters)  # fmt: skip

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
        if self.scatters:
            return (f"{spread}, independently of the pressure, but scaling each inference by it put the repeats "
                    f"further apart ({self.spread_scaled:.1%} between repeats, against {self.spread_raw:.1%} as "
                    f"measured): the probe did not track what slowed the workload, so verdicts and compare use raw "
                    f"latencies.")  # fmt: skip
        return (f"{spread}, independently of the pressure: verdicts (cliffs, falls, curves) are judged with each "
                f"inference scaled to the median speed; the latencies shown are raw.")


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
    worse, raw, scaled = scatters(run.samples, ref)
    return SpeedFacts(True, ref, low, high, float(rho), float(p), effect, follows, scatters=worse, spread_raw=raw,
                      spread_scaled=scaled)  # fmt: skip


def for_verdicts(run: Run) -> Run:
    """The run verdicts are judged on: adjusted to its own median speed when its probes do not follow the
    pressure (:class:`SpeedFacts`), else as measured."""

    def judged(run: Run) -> Run | None:  # None for "as measured": the cache must not hold the run itself
        f = facts(run)
        return adjusted(run, f.reference_ns) if f.adjusts else None

    found = _cached("verdicts", run, judged)
    return found if found is not None else run


def point_speed(run: Run) -> dict[tuple[float, str], float]:
    """Per (value, setting): the median probe over the point's timed samples (empty without probes)."""
    if not has_speed(run):
        return {}
    timed = run.samples[_timed(run.samples)]
    medians = timed.groupby(["value", "setting"])[COLUMN].median()
    return {(float(v), str(st)): float(p) for (v, st), p in medians.items()}
