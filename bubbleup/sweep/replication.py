"""Which steps need another repeat: more replication only where the planned repeats disagree.

On our VMs the largest variation is between repeats, not within a step (README, round 6: a repeat's
deviation is shared by every setting measured with the same bubbles), and it is not spread evenly: at
the main job's cliff one point's repeat IQMs spread 7-12% (CV), at the points below it 1-3%. A step's
precision rule cannot see it; more repeats everywhere cost a third more run time each. Kalibera and
Jones ("Rigorous benchmarking in reasonable time", ISMM 2013) size each level of repetition from the
variance measured at that level; this does the same per step: after the planned repeats, each step of a
point (one setting at one pressure) whose mean over its repeats has a relative standard error above the
target gets one more repeat, one round at a time, until it is within the target or at ``max_repeats``.
A round measures only those steps: in the noisy spells where rounds happen, a third to a half of a
point's steps ask for one (2026-12-07, set G), so a round costs that share of a whole-point round.

A repeat's level is the IQM of its timed latencies at one CPU speed (each scaled by the run's median
probe / its own probe, to the power of how far latency follows the probe in this run:
``analysis.speed.at_fitted_speed``), so a VM changing speed between repeats does not ask for repeats
the pressure never caused. Pure but for reading the run's own ``samples.csv``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bubbleup.analysis import speed
from bubbleup.analysis.stats import iqm
from bubbleup.specs import ReplicationSpec
from bubbleup.store import reader
from bubbleup.store.manifest import LISTED_ONLY, StepId, round_steps
from bubbleup.sweep.plan import point_order

COLUMNS = ["repeat", "value", "workload", "setting", "phase", "latency_ms", "speed_ns"]
#: What joins a sample to its step's row in points.csv as written (:data:`bubbleup.store.reader.STEP_KEY`).
OK_KEY = ["workload", *reader.STEP_KEY]


@dataclass(frozen=True)
class StepSpread:
    """One step of a point: the relative standard error of its mean over ``repeats`` repeat IQMs."""

    value: int
    workload: str
    setting: str
    repeats: int
    relative_se: float

    @property
    def step(self) -> StepId:
        return (self.value, self.workload, self.setting)

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "workload": self.workload, "setting": self.setting, "repeats": self.repeats,
                "relative_se": round(self.relative_se, 5)}  # fmt: skip


def repeats_ran(plan: list[tuple[int, int]], rounds: list[dict[str, Any]]) -> Callable[[StepId], int]:
    """How many repeats each step ran, from the plan: every step of a planned point, only the listed steps of an
    extra repeat's point (:func:`bubbleup.store.manifest.round_steps`). A repeat whose step failed leaves no
    samples, so counting those would let a step that keeps failing ask for repeats for ever; it is at
    ``max_repeats`` when it has run that often, whatever came of it."""
    whole: Counter[int] = Counter()
    listed: Counter[StepId] = Counter()
    for repeat, value in plan:
        steps = round_steps(rounds, repeat)
        if steps is None:
            whole[value] += 1
        else:
            listed.update(s for s in steps if s[0] == value)
    return lambda step: whole[step[0]] + listed[step]


def spreads(samples: pd.DataFrame, ran: Callable[[StepId], int] | None = None) -> list[StepSpread]:
    """Every step's spread: how far its repeat IQMs disagree (relative standard error of their mean), with the
    repeats it ran (``ran``; without it, the repeats that left samples)."""
    samples = speed.at_fitted_speed(samples, speed.median_probe(samples))
    timed = samples[(samples["phase"] == "timed") & samples["latency_ms"].notna()]
    if timed.empty:
        return []
    by_repeat = timed.groupby(["value", "workload", "setting", "repeat"], sort=False)["latency_ms"]
    levels = by_repeat.agg(lambda x: float(iqm(x.to_numpy())))
    out: list[StepSpread] = []
    for (value, workload, setting), per_repeat in levels.groupby(level=["value", "workload", "setting"], sort=False):
        k = len(per_repeat)
        mean = float(per_repeat.mean())
        rse = float(per_repeat.std(ddof=1)) / mean / math.sqrt(k) if k >= 2 and mean > 0 else math.inf
        step = (int(value), str(workload), str(setting))
        out.append(StepSpread(*step, k if ran is None else ran(step), rse))
    return sorted(out, key=lambda p: p.value)


def wanting(samples: pd.DataFrame, target: float, max_repeats: int,
            ran: Callable[[StepId], int] | None = None) -> list[StepSpread]:  # fmt: skip
    """The steps that need another repeat: above ``target`` with fewer than ``max_repeats`` repeats."""
    return [p for p in spreads(samples, ran) if p.relative_se > target and p.repeats < max_repeats]


def next_round(samples: pd.DataFrame, plan: list[tuple[int, int]], rounds: list[dict[str, Any]],
               rule: ReplicationSpec, order: str, seed: int) -> tuple[list[tuple[int, int]], dict[str, Any], str]:
    """The next round: (its points, one new repeat of every point with a step that wants one, in the sweep's
    ``order`` (:func:`bubbleup.sweep.plan.point_order`; a shuffle seeded by ``seed`` and the repeat, so a resumed
    run draws the same); its manifest entry, which lists the steps it measures (``LISTED_ONLY``): at such a
    point the others already agree, and measuring them again would cost as much and change nothing; a line for
    the user). No points: the entry lists the steps left above the target. ``rounds`` are the manifest's
    replication entries so far."""
    ran = repeats_ran(plan, rounds)
    want = wanting(samples, rule.target, rule.max_repeats, ran)
    if not want:
        unmet = [p.to_dict() for p in spreads(samples, ran) if p.relative_se > rule.target]
        return [], {"repeat": None, "points": unmet}, ""
    repeat = max(r for r, _ in plan) + 1
    values = point_order({p.value for p in want}, repeat, order, random.Random(f"{seed}/{repeat}"))
    worst = max(want, key=lambda p: p.relative_se)
    note = (f"repeat {repeat + 1}: {len(want)} step(s) at {len(values)} point(s) whose repeats disagree beyond "
            f"+/-{rule.target:.1%} (worst: {worst.setting} at {worst.value}, +/-{worst.relative_se:.1%})")  # fmt: skip
    entry = {"repeat": repeat, LISTED_ONLY: True, "points": [p.to_dict() for p in want]}
    return [(repeat, v) for v in values], entry, note


def read_samples(root: Path) -> pd.DataFrame:
    """The run's samples so far of the steps that finished ok (what every latency statistic reads:
    ``analysis.summary.timed_samples``; a step whose pressure was not held leaves samples that describe
    no point), read as every reader of a run directory reads them, only the columns the decision reads."""
    points = reader.read_points(root)
    samples = reader.read_samples(root, columns=[*COLUMNS, *OK_KEY])
    return reader.of_ok_steps(samples, points, OK_KEY)[COLUMNS]
