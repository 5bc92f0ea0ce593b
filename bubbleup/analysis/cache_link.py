"""Which steps of an ``placement: apart`` run were timed while the workload's and the bubbles' CPUs shared no L3.

``points.csv`` ``cpu_link_ns`` is one cache line's round trip between the two CPUs, timed before each step
(:mod:`bubbleup.machine.cache_link`). Under one L3 it is the run's fastest; across L3 domains it is 1.6-1.9x that
(190-230 against 340-370 ns from Python on the EPYC VM; a line the scheduler cut into reads up to 1.45x). A step
above :data:`APART_RATIO` times the run's fastest was measured with the bubbles on another L3: it felt their
memory traffic, not their pressure on the workload's cache, so verdicts and curves, the sensitivity and reporter
curves, scores and co-runs among them (all built on ``summary.setting_curves``), leave it out, as they are judged
at one CPU speed; the tables and figures of latencies keep it. The rule is relative, so a run whose every step was
apart reads as shared: the sentence gives the round trips so a reader can compare them with another run's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bubbleup.formatting import format_value
from bubbleup.store.reader import of_ok_steps

APART_RATIO = 1.5


@dataclass(frozen=True)
class LinkFacts:
    steps: int  # steps with a round trip timed
    fastest_ns: float
    shared_high_ns: float  # the slowest round trip still read as one L3
    apart: tuple[str, ...]  # "SETTING at VALUE (repeat R)" of each step timed apart
    apart_low_ns: float = float("nan")
    apart_high_ns: float = float("nan")

    def sentence(self) -> str:
        if not self.apart:
            trip = f"{self.fastest_ns:.0f}-{self.shared_high_ns:.0f} ns"
            return (f"The workload's and the bubbles' CPUs shared a last-level cache before every one of the "
                    f"{self.steps} steps (a cache line's round trip {trip}).")
        named = "; ".join(self.apart[:3]) + (f" and {len(self.apart) - 3} more" if len(self.apart) > 3 else "")
        return (f"At {len(self.apart)} of {self.steps} steps the workload's and the bubbles' CPUs did not share a "
                f"last-level cache (a cache line's round trip {self.apart_low_ns:.0f}-{self.apart_high_ns:.0f} ns, "
                f"against {self.fastest_ns:.0f}-{self.shared_high_ns:.0f} ns at the others): the hypervisor had moved "
                f"them apart, and those steps felt the bubbles' memory traffic but not their pressure on the "
                f"workload's cache, so verdicts and curves leave them out (the tables keep them): {named}.")


def _round_trips(points: pd.DataFrame) -> pd.Series:
    """``cpu_link_ns`` of the steps that have one (empty: not ``apart``, or a run from before the column)."""
    if "cpu_link_ns" not in points:
        return pd.Series(dtype=float)
    return pd.to_numeric(points["cpu_link_ns"], errors="coerce").dropna()


def apart_mask(rtt: pd.Series) -> pd.Series:
    """The rule, once: a round trip above :data:`APART_RATIO` times the run's fastest was timed apart."""
    return rtt > APART_RATIO * rtt.min()


def apart_steps(points: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``points`` whose step was timed with the CPUs on different L3s."""
    rtt = _round_trips(points)
    return points.loc[rtt.index[apart_mask(rtt)]] if len(rtt) else points.iloc[0:0]


def shared_only(samples: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """``samples`` (of steps that finished ok) without those of the steps timed apart, joined to their steps as
    every sample is (``reader.of_ok_steps``): what verdicts and curves are judged on, as they are judged at one CPU
    speed; the tables keep every sample."""
    away = apart_steps(points)
    return samples if away.empty else of_ok_steps(samples, points.drop(away.index)).reset_index(drop=True)


def facts(points: pd.DataFrame, axis: str) -> LinkFacts | None:
    """The run's round trips read by :data:`APART_RATIO`; None when none was timed (not ``apart``, older runs)."""
    rtt = _round_trips(points)
    if rtt.empty:
        return None
    timed = points.loc[rtt.index]
    fastest = float(rtt.min())
    apart = apart_mask(rtt)
    shared, away = rtt[~apart], timed[apart]
    named = tuple(f"{r.setting} at {format_value(float(r.value), axis)} (repeat {int(r.repeat) + 1})"
                  for r in away.itertuples())  # fmt: skip
    return LinkFacts(len(timed), fastest, float(shared.max()), named,
                     float(rtt[apart].min()) if apart.any() else float("nan"),
                     float(rtt[apart].max()) if apart.any() else float("nan"))  # fmt: skip
