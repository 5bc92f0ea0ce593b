"""Accuracy beside latency: each pressure level's Pareto frontier and the setting to use there.

ApproxNet exists to trade accuracy for latency when the device is contended. Given a run whose
workload says what is right (points with ``top1``), this module answers the user's question per
pressure level, with ApproxDet's scheduling rule (Xu et al., SenSys 2020): the most accurate setting
whose latency at the chosen percentile is within the SLO divided by a safety margin (1.3 by default),
and the fastest setting when none fits. The level from which no setting fits any more is the cliff of
the *adaptive* system, as opposed to one setting's cliff.

A fixed network gives a frame the same answer whatever the pressure, so a setting's accuracy is
pooled over every point of the run (:func:`setting_accuracy`), the most frames it saw; its latency is
the point's own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bubbleup.analysis.stats import MIN_TAIL_SAMPLES, PERCENTILES, samples_needed, top1
from bubbleup.analysis.summary import timed_samples
from bubbleup.formatting import format_value, pressure
from bubbleup.store.reader import Run
from bubbleup.store.records import STATUS_OK

#: ApproxDet's margin: a setting is chosen when its predicted latency is within SLO / 1.3.
DEFAULT_MARGIN = 1.3
#: Percentiles a recommendation can be read at (the summary's columns).
CHOICES = (50, *PERCENTILES)


class TradeoffError(ValueError):
    """A run that cannot answer the question asked (no accuracy, a percentile without support)."""


@dataclass(frozen=True)
class Accuracy:
    """One setting's top-1 over the distinct samples it answered in the run, with its 95% Wilson interval."""

    top1: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        return f"{self.top1:.1%} ({self.low:.1%}-{self.high:.1%}, n={self.n})"


@dataclass(frozen=True)
class Option:
    """A setting at one pressure level: its latency at the percentile asked and its accuracy."""

    setting: str
    latency_ms: float
    accuracy: Accuracy


@dataclass(frozen=True)
class Level:
    """One pressure level: every setting measured there, the Pareto frontier, and the choice."""

    value: float
    options: tuple[Option, ...]
    frontier: tuple[Option, ...]  # fastest first; each more accurate than every faster one
    chosen: Option | None  # the most accurate within the budget; None when nothing fits
    fallback: Option | None  # the fastest setting, what ApproxDet runs when nothing fits


@dataclass(frozen=True)
class Recommendation:
    slo_ms: float
    percentile: float
    margin: float
    axis: str
    levels: tuple[Level, ...]
    set_size: int = 1  # bubbles per set of kinds (``bubbles:``): a count sweep's value then counts sets

    @property
    def budget_ms(self) -> float:
        return self.slo_ms / self.margin

    @property
    def no_fit_from(self) -> float | None:
        """The lowest pressure from which on no setting fits at any higher measured level; None if one fits
        at the highest level measured."""
        start: float | None = None
        for level in self.levels:
            if level.chosen is None:
                start = level.value if start is None else start
            else:
                start = None
        return start

    def lines(self) -> list[str]:
        """The table, then one sentence on where the adaptive system runs out of settings."""
        p = "median" if self.percentile == 50 else f"p{self.percentile:g}"
        head = (f"SLO {self.slo_ms:g} ms at the {p}, margin {self.margin:g}: a setting fits when its {p} is "
                f"within {self.budget_ms:.2f} ms")  # fmt: skip
        out = [head, f"{'pressure':>10}  {'setting':16} {p + ' ms':>9}  top-1"]
        for level in self.levels:
            where = format_value(level.value, self.axis)
            if level.chosen is not None:
                c = level.chosen
                out.append(f"{where:>10}  {c.setting:16} {c.latency_ms:>9.2f}  {c.accuracy.text()}")
            else:
                f = level.fallback
                fb = f" (fastest: {f.setting}, {f.latency_ms:.2f} ms)" if f is not None else ""
                out.append(f"{where:>10}  {'none fits':16} {'':>9}  {fb.strip()}")
        stop = self.no_fit_from
        if stop is None:
            out.append(f"Some setting meets the SLO at every pressure measured (up to "
                       f"{pressure(self.levels[-1].value, self.axis, self.set_size)}).")  # fmt: skip
        else:
            out.append(f"From {pressure(stop, self.axis, self.set_size)} on, no setting meets the SLO: the adaptive "
                       f"system's cliff.")  # fmt: skip
        return out


def setting_accuracy(run: Run) -> dict[str, Accuracy]:
    """Each setting's top-1 over every distinct sample it answered in the run (all points and repeats)."""
    timed = timed_samples(run)
    out: dict[str, Accuracy] = {}
    if timed.empty:
        return out
    for setting, g in timed.groupby("setting", sort=False):
        a = top1(g["sample"].to_numpy(dtype=float), g["correct"].tolist())
        if a["top1_n"] > 0:
            out[str(setting)] = Accuracy(a["top1"], a["top1_low"], a["top1_high"], int(a["top1_n"]))
    return out


def frontier(options: Sequence[Option]) -> tuple[Option, ...]:
    """The Pareto frontier, fastest first: no other option is both at least as fast and more accurate."""
    best: list[Option] = []
    for o in sorted(options, key=lambda o: (o.latency_ms, -o.accuracy.top1)):
        if not best or o.accuracy.top1 > best[-1].accuracy.top1:
            best.append(o)
    return tuple(best)


def latency_column(percentile: float) -> str:
    if percentile not in CHOICES:
        raise TradeoffError(f"percentile {percentile:g} is not one of {', '.join(f'{c:g}' for c in CHOICES)}")
    return "median_ms" if percentile == 50 else f"p{percentile:g}_ms"


def levels(summary: pd.DataFrame, accuracy: dict[str, Accuracy], percentile: float = 50,
           budget_ms: float = math.inf) -> list[Level]:  # fmt: skip
    """Per pressure level (ascending), its options, frontier and choice under ``budget_ms``."""
    col = latency_column(percentile)
    ok = summary[(summary["status"] == STATUS_OK) & summary["setting"].isin(list(accuracy))]
    out = []
    for value, g in ok.groupby("value", sort=True):
        options = tuple(Option(str(r["setting"]), float(r[col]), accuracy[str(r["setting"])])
                        for _, r in g.iterrows() if not math.isnan(float(r[col])))  # fmt: skip
        fits = [o for o in options if o.latency_ms <= budget_ms]
        chosen = max(fits, key=lambda o: (o.accuracy.top1, -o.latency_ms)) if fits else None
        fallback = min(options, key=lambda o: o.latency_ms) if options else None
        out.append(Level(float(value), options, frontier(options), chosen, fallback))
    return out


def recommend(run: Run, summary: pd.DataFrame, slo_ms: float, percentile: float = 50, margin: float = DEFAULT_MARGIN,
              accuracy: dict[str, Accuracy] | None = None) -> Recommendation:  # fmt: skip
    """The most accurate setting within ``slo_ms / margin`` at each pressure level of ``run``; ``accuracy`` is
    :func:`setting_accuracy` of the run when the caller already has it (it parses every sample's info)."""
    if not slo_ms > 0:
        raise TradeoffError(f"--slo-ms must be a positive number of milliseconds, not {slo_ms:g}")
    if not margin >= 1.0:
        raise TradeoffError(f"--margin must be at least 1 (the SLO divided by it is the budget), not {margin:g}")
    latency_column(percentile)  # an unknown percentile is refused before anything is read
    if run.axis == "schedule":
        raise TradeoffError(f"{run.path} ran a schedule of changing pressure, not levels to choose a setting at; "
                            "its report compares its configurations against the SLO frame by frame")  # fmt: skip
    accuracy = setting_accuracy(run) if accuracy is None else accuracy
    if not accuracy:
        raise TradeoffError(f"{run.path}: no accuracy records: the workload does not say which answers are right "
                            "(approxnet, mcdnn and synthetic with correct_share do)")  # fmt: skip
    if percentile != 50:
        need = samples_needed(percentile)
        ok = summary[summary["status"] == STATUS_OK]
        thin = ok[ok[f"p{percentile:g}_thin"].astype(bool)]
        if len(thin):
            raise TradeoffError(f"{run.path}: p{percentile:g} needs at least {need} timed samples per point "
                                f"({MIN_TAIL_SAMPLES} at or above it); {len(thin)} of {len(ok)} points have fewer "
                                f"(as few as {int(thin['n'].min())}): use --percentile 50 or a run with more "
                                "samples")  # fmt: skip
    found = levels(summary, accuracy, percentile, slo_ms / margin)
    if not found:
        raise TradeoffError(f"{run.path}: no completed points to recommend from")
    return Recommendation(slo_ms, percentile, margin, run.axis, tuple(found), run.set_size)


def profile_table(run: Run, summary: pd.DataFrame, settings: Sequence[str], percentile: float = 50) -> dict[str, Any]:
    """What an adaptive workload needs of a profile run (:class:`bubbleup.sweep.adaptive.Profile`): per candidate
    setting, its latency at ``percentile`` and its median at every pressure level, and its accuracy.

    Refused (:class:`TradeoffError`, naming what is missing) unless the run is a count sweep that measured every
    candidate, with accuracy, at every one of its levels: the sensor matches a setting's latencies against
    its own profile, so a hole anywhere is a level the workload could not recognise."""
    if run.axis != "count":
        raise TradeoffError(f"{run.path} is a {run.axis} sweep; a profile is a bubble-count sweep")
    col = latency_column(percentile)
    accuracy = setting_accuracy(run)
    ok = summary[summary["status"] == STATUS_OK]
    levels_found = sorted(float(v) for v in ok["value"].unique())
    if not levels_found:
        raise TradeoffError(f"{run.path}: no completed points")
    missing = [s for s in settings if s not in accuracy]
    if missing:
        more = " ..." if len(missing) > 4 else ""
        raise TradeoffError(f"{run.path} has no accuracy for {', '.join(missing[:4])}{more} "
                            f"(measured: {', '.join(list(accuracy)[:6])})")  # fmt: skip
    latency: dict[str, list[float]] = {}
    median: dict[str, list[float]] = {}
    for s in settings:
        g = ok[ok["setting"] == s].set_index("value")
        holes = [v for v in levels_found if v not in g.index or math.isnan(float(g.loc[v, col]))]
        if holes:
            raise TradeoffError(f"{run.path} did not measure {s} at {len(holes)} of its levels "
                                f"({', '.join(format_value(v, 'count') for v in holes[:4])} bubbles)")  # fmt: skip
        if percentile != 50 and bool(g[f"p{percentile:g}_thin"].any()):
            need = samples_needed(percentile)
            raise TradeoffError(f"{run.path}: p{percentile:g} of {s} rests on fewer than {need} timed samples at "
                                "some level; use percentile 50 or a profile with more samples")  # fmt: skip
        latency[s] = [round(float(g.loc[v, col]), 6) for v in levels_found]
        median[s] = [round(float(g.loc[v, "median_ms"]), 6) for v in levels_found]
    return {"source": str(run.path), "percentile": percentile, "levels": levels_found, "latency_ms": latency,
            "median_ms": median, "accuracy": {s: round(accuracy[s].top1, 6) for s in settings}}  # fmt: skip
