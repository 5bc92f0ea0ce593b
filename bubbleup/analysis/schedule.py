"""A schedule run's answer: how each configuration fared while contention came and went.

Every configuration of a schedule run (a fixed setting, or an adaptive workload) ran through the same
phases of bubbles, so they are compared frame by frame against one SLO: the share of frames within it,
the share answered right (the frames' mean accuracy), and, for an adaptive workload, how often it
switched and what a switch cost. The targets (issue 12): the adaptive workload meets the SLO in at
least :data:`TARGET_SHARE` of its frames, and its mean accuracy is at least that of the best fixed
setting that also does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bubbleup.analysis.stats import nearest_rank, wilson
from bubbleup.analysis.summary import timed_samples
from bubbleup.store.reader import Run
from bubbleup.store.records import ADAPTIVE

#: The share of frames a configuration must keep within the SLO to count as meeting it.
TARGET_SHARE = 0.95


@dataclass(frozen=True)
class SeriesResult:
    """One configuration through the schedule, every repeat pooled."""

    series: str
    adaptive: bool
    frames: int
    within: float  # share of timed frames with latency <= the SLO (NaN without an SLO)
    within_low: float  # its 95% Wilson interval
    within_high: float
    accuracy: float  # share of timed frames answered right (NaN when the workload does not say)
    median_ms: float
    p95_ms: float
    switches: int  # changes of the setting that ran, between consecutive frames
    switch_ms: float  # median latency of the frames that paid a switch (NaN without switches)
    steady_ms: float  # median latency of the other frames
    transition_frames: int  # frames that started while bubbles were joining or leaving
    phase_within: tuple[float, ...]  # share within the SLO per schedule phase
    settings_used: tuple[str, ...]  # the settings that ran, most frames first

    @property
    def meets(self) -> bool:
        return self.within >= TARGET_SHARE


@dataclass(frozen=True)
class ScheduleResult:
    slo_ms: float
    series: tuple[SeriesResult, ...]
    phases: tuple[tuple[int, float], ...]  # (bubble sets, seconds) per phase

    @property
    def best_fixed(self) -> SeriesResult | None:
        """The most accurate fixed configuration that meets the SLO in TARGET_SHARE of its frames."""
        ok = [s for s in self.series if not s.adaptive and s.meets and not math.isnan(s.accuracy)]
        return max(ok, key=lambda s: s.accuracy) if ok else None

    @property
    def has_slo(self) -> bool:
        """Whether frames were held to an SLO (the scenario's ``slo``, or an adaptive workload's own)."""
        return not math.isnan(self.slo_ms)

    def targets(self) -> list[str]:
        """For each adaptive configuration, the two targets in words, met or not, with the numbers."""
        out: list[str] = []
        if not self.has_slo:
            return out
        best = self.best_fixed
        for s in self.series:
            if not s.adaptive:
                continue
            slo = "met" if s.meets else "NOT met"
            out.append(f"{s.series}: within {self.slo_ms:g} ms in {s.within:.1%} of {s.frames} frames "
                       f"(target {TARGET_SHARE:.0%}: {slo})")  # fmt: skip
            if best is None:
                out.append(f"{s.series}: no fixed setting keeps {TARGET_SHARE:.0%} of its frames within the SLO, "
                           f"so any accuracy meets the second target ({s.accuracy:.1%})")  # fmt: skip
            else:
                acc = "met" if s.accuracy >= best.accuracy else "NOT met"
                out.append(f"{s.series}: mean accuracy {s.accuracy:.1%} vs {best.accuracy:.1%} of the best fixed "
                           f"setting within the SLO ({best.series}): {acc}")  # fmt: skip
        return out

    def lines(self) -> list[str]:
        head = (f"{'configuration':28} {'frames':>7} {'within SLO':>11} {'accuracy':>9} {'median':>8} {'p95':>8} "
                f"{'switches':>8}")  # fmt: skip
        slo = f"SLO {self.slo_ms:g} ms" if self.has_slo else "no SLO given"
        out = [f"Under the schedule ({' -> '.join(f'{b} for {s:g} s' for b, s in self.phases)} bubble sets), "
               f"{slo}:", head]  # fmt: skip
        for s in self.series:
            acc = f"{s.accuracy:.1%}" if not math.isnan(s.accuracy) else "-"
            within = f"{s.within:.1%}" if not math.isnan(s.within) else "-"
            out.append(f"{s.series:28} {s.frames:>7} {within:>11} {acc:>9} {s.median_ms:>8.2f} {s.p95_ms:>8.2f} "
                       f"{s.switches if s.adaptive else '':>8}")  # fmt: skip
        return out + self.targets()


def frames(run: Run) -> pd.DataFrame:
    """The timed frames of a schedule run, each with its series, the setting that ran, whether it was right,
    whether it paid a switch, and its start on its step's schedule clock (``t_sched_s``)."""
    s = timed_samples(run)
    if s.empty:
        return s
    s = s.copy()
    ran = s["ran_setting"].where(s["ran_setting"].notna(), s["setting"].astype(str).str.split(":").str[-1])
    s["ran"] = ran.astype(str)
    s["start_s"] = s["t_s"] - s["latency_ms"] / 1e3
    keys = ["repeat", "workload", "step"]
    s = s.sort_values([*keys, "iteration"]).reset_index(drop=True)
    s["t_sched_s"] = s["start_s"] - s.groupby(keys)["start_s"].transform("min")
    s["switched"] = (s.groupby(keys)["ran"].shift() != s["ran"]) & s.groupby(keys).cumcount().gt(0)
    return s


def _slo_ms(run: Run) -> float:
    """The scenario's SLO, else the adaptive workload's own."""
    slo = run.effective.get("slo") or {}
    if slo.get("ms"):
        return float(slo["ms"])
    for w in [run.effective.get("workload"), *(run.effective.get("workloads") or [])]:
        if isinstance(w, dict) and isinstance(w.get("adapt"), dict):
            return float(w["adapt"]["slo_ms"])
    return math.nan


def analyse(run: Run) -> ScheduleResult | None:
    """Each configuration's frames against the SLO; None for a run that is not a schedule or has no frames."""
    if run.axis != "schedule":
        return None
    f = frames(run)
    if f.empty:
        return None
    slo = _slo_ms(run)
    given = (run.effective.get("sweep") or {}).get("phases") or []
    phases = tuple((int(p["bubbles"]), float(p["seconds"])) for p in given)
    out = []
    present = set(f["setting"].astype(str))
    for series in [x for x in run.settings if x in present]:  # the run's own order
        g = f[f["setting"].astype(str) == series]
        lat = g["latency_ms"].to_numpy(dtype=float)
        inside = lat <= slo
        n = len(lat)
        low, high = wilson(float(inside.sum()), n) if not math.isnan(slo) else (math.nan, math.nan)
        sw = g["switched"].to_numpy(dtype=bool)
        per_phase = tuple(float((g.loc[g["schedule_phase"] == k, "latency_ms"] <= slo).mean())
                          if (g["schedule_phase"] == k).any() and not math.isnan(slo) else math.nan
                          for k in range(len(phases)))  # fmt: skip
        correct = g["correct"].to_numpy(dtype=float)
        out.append(SeriesResult(
            series=series, adaptive=series.split(":")[-1] == ADAPTIVE, frames=n,
            within=float(inside.mean()) if not math.isnan(slo) else math.nan, within_low=low, within_high=high,
            accuracy=float(np.nanmean(correct)) if np.isfinite(correct).any() else math.nan,
            median_ms=float(np.median(lat)), p95_ms=nearest_rank(lat, 95),
            switches=int(sw.sum()), switch_ms=float(np.median(lat[sw])) if sw.any() else math.nan,
            steady_ms=float(np.median(lat[~sw])) if (~sw).any() else math.nan,
            transition_frames=int(g["transition"].fillna(0).astype(int).sum()), phase_within=per_phase,
            settings_used=tuple(str(x) for x in g["ran"].value_counts().index),
        ))  # fmt: skip
    return ScheduleResult(slo, tuple(out), phases)
