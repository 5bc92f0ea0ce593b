"""The cliff predicted from CPU demand, to set beside the cliff measured.

On a machine whose bottleneck is CPU time, a count sweep should break where the total demand first
exceeds the cores: the workload's own CPU use with no pressure (``cpu_cores`` in points.csv, the
worker's CPU time over its timed loop, every thread counted) plus the bubbles' duties, against the
cores the run may use (its CPU affinity, or a budget's quota when smaller; manifest ``cpu_demand``).
The TX2 study's Figure 3.3 is this arithmetic on a 6-core board: a slight rise for four bubbles and a
jump at the fifth. A measured cliff far from the predicted one says the bottleneck is elsewhere
(memory bandwidth, cache, the scheduler's placement), which is worth knowing.

Only count sweeps change CPU demand; a size sweep holds it constant, and gets no prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bubbleup.analysis.cliff import Cliff, within_one_step
from bubbleup.formatting import number, pressure_unit
from bubbleup.store.reader import Run
from bubbleup.store.records import STATUS_OK


@dataclass(frozen=True)
class DemandPrediction:
    """One setting's predicted cliff: the first measured count whose CPU demand exceeds the cores."""

    setting: str
    workload_cores: float  # the worker's CPU use at the lowest measured pressure
    per_unit: float  # cores one unit of the sweep value asks for (one bubble, or one set of kinds)
    cores: float  # cores the run may use
    baseline: float  # the pressure the workload's use was measured at (0 when measured)
    predicted_at: float | None  # None: demand stays within the cores over the measured range
    measured_max: float
    set_size: int = 1  # bubbles per set of kinds (``bubbles:``): per_unit is then one set's

    def agrees(self, cliff: Cliff | None, values: list[float]) -> bool | None:
        """Whether the measured cliff is the predicted one or one measured step from it (None: nothing to check)."""
        if cliff is None or cliff.kind == "no data":
            return None
        return within_one_step(cliff.location, self.predicted_at, values)

    def where(self) -> str:
        """``at 5``, or ``beyond 7 (demand stays within the cores)``."""
        return (f"at {number(self.predicted_at)}" if self.predicted_at is not None
                else f"beyond {number(self.measured_max)} (demand stays within the cores)")  # fmt: skip

    def why(self) -> str:
        """The arithmetic behind the prediction, in words."""
        unit = pressure_unit("count", self.set_size, 1)
        # measured at the lowest pressure that ran: without pressure, unless that point failed or was not swept
        where = ("alone" if self.baseline == 0 else
                 f"beside {number(self.baseline)} {pressure_unit('count', self.set_size, self.baseline)}")  # fmt: skip
        return (f"the workload {where} uses {self.workload_cores:.2f} cores, each {unit} asks for "
                f"{self.per_unit:.2f}, the run may use {number(self.cores)}")  # fmt: skip

    def measured(self, cliff: Cliff, values: list[float]) -> str:
        """``at 5; within one step``: the measured cliff beside the prediction."""
        measured = f"at {number(cliff.at)}" if cliff.found else "none in the measured range"
        ok = self.agrees(cliff, values)
        return measured + ("" if ok is None else ("; within one step" if ok else "; not within one step"))

    def short(self, cliff: Cliff, values: list[float]) -> str:
        """For a table beside the measured verdict: ``at 4 (within one step)``."""
        ok = self.agrees(cliff, values)
        if ok and self.predicted_at is None and not cliff.found:
            return self.where() + " (agrees)"
        return self.where() + ("" if ok is None else " (within one step)" if ok else " (NOT within one step)")

    def sentence(self, cliff: Cliff | None = None, values: list[float] | None = None) -> str:
        """``HH: CPU demand predicts the cliff at 2 (1.31 cores alone + 1.00 per bubble > 2 cores); measured at 2.``"""
        text = f"{self.setting}: CPU demand predicts the cliff {self.where()} ({self.why()})"
        if cliff is not None:
            text += f"; measured: {self.measured(cliff, values or [])}"
        return text + "."


def predict(run: Run) -> list[DemandPrediction]:
    """Per setting of a count sweep with measured worker CPU use; empty when the run cannot say."""
    facts = run.manifest.cpu_demand or {}
    points = run.points
    if run.axis != "count" or not facts or points.empty or "cpu_cores" not in points:
        return []
    cores, per_unit = float(facts.get("cores") or 0), float(facts.get("duty_per_set") or 0)
    if cores <= 0 or facts.get("demand_unknown") or facts.get("rate_limited"):  # rate_limited: runs before 2026-12-07
        return []  # a rate-held bubble's or a command co-runner's CPU use is not known in advance
    ok = points[(points["status"] == STATUS_OK) & points["cpu_cores"].notna()]
    out = []
    for setting in run.settings:
        rows = ok[ok["setting"] == setting]
        if rows.empty:
            continue
        values = sorted(float(v) for v in rows["value"].unique())
        base = values[0]
        workload = float(pd.to_numeric(rows.loc[rows["value"] == base, "cpu_cores"]).median())
        over = [v for v in values if workload + v * per_unit > cores + 1e-9]
        out.append(DemandPrediction(setting, workload, per_unit, cores, base, over[0] if over else None, values[-1],
                                    run.set_size))  # fmt: skip
    return out
