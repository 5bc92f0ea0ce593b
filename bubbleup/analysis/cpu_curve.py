"""The CPU dimension of a prediction: a workload's QoS against the CPU demand placed beside it.

Bubble-Up assumed the co-runner had cores of its own; on a 2-core VM or a 6-core board it also
time-shares with the workload. A **CPU curve** is a setting's normalised QoS against the cores of
CPU-only bubbles (``kind: cpu``: no memory walked) sharing the workload's CPUs, from a count sweep:
``cores = count x summed duty of one bubble set``, ``qos = latency(0) / latency(cores)``, with the
same hierarchical-bootstrap interval the sensitivity curves have
(:func:`bubbleup.analysis.sensitivity.curve_of`). A co-runner's measured CPU use (its score run's
``corunner_cores``, as one task at most per session where the kernel groups by session: :meth:`CpuCurve.load`) is read
off it, and :func:`bubbleup.analysis.prediction.predict` multiplies that
QoS with the one read off the memory sensitivity curve at the bubble score: the two pressures taken
as independent slowdowns. Where they are not (a co-runner that streams memory *on the workload's
own core*), the product is wrong, and the benchmark says by how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bubbleup.analysis import summary as summaries
from bubbleup.analysis.sensitivity import curve_of
from bubbleup.store.reader import Run

#: Bubble kinds that take CPU and touch no memory: what a CPU curve must be measured with.
CPU_ONLY_KINDS = frozenset({"cpu"})


@dataclass(frozen=True)
class CpuCurve:
    """One setting's normalised QoS against the cores of CPU-only load beside it, at one percentile."""

    setting: str
    percentile: float
    base_latency_ms: float
    cores: tuple[float, ...]  # ascending, 0 first (qos 1)
    qos: tuple[float, ...]
    qos_low: tuple[float, ...]
    qos_high: tuple[float, ...]
    #: The machine shares CPU time between sessions before threads (``sched_autogroup_enabled``, as most desktop
    #: and board kernels): a co-runner, which the co-runner shim starts in a session of its own, then competes
    #: as one task however many threads it keeps busy.
    per_session: bool = False

    def load(self, sessions: Sequence[float]) -> float:
        """Where a co-runner sits on this curve's axis (its bubbles' cores), from the cores each of its sessions
        keeps busy alone (one for a program; a mix of programs, one each).

        Per session, at most one: its session's CPU weight is one task's, spread over its threads. Measured
        2026-12-06 on 2 CPUs with ApproxNet pinned to one: ``stress-ng --cpu 3`` and ``--matrix 3`` (1.92 and
        1.98 cores alone) left it at QoS 0.99-1.02, where the curve at 2 cores read 0.75-0.98 (the balancer
        kept all their threads on the other CPU, whose load then equals the workload's). Sessions add up: three
        one-thread programs load the CPUs as three tasks. Without session grouping, every thread competes: the
        cores themselves."""
        return float(sum(min(c, 1.0) if self.per_session else c for c in sessions))

    def monotone(self) -> np.ndarray:
        """The closest non-increasing QoS: more CPU load beside the workload never helps it."""
        from scipy.optimize import isotonic_regression

        return np.asarray(isotonic_regression(np.asarray(self.qos), increasing=False).x)

    def at(self, cores: float) -> tuple[float, float, float, bool]:
        """QoS (and its interval) at ``cores``, linearly interpolated on the monotone fit; and whether
        ``cores`` lies beyond the measured range (then clamped to its end: read as at least this slow)."""
        xs = np.asarray(self.cores)
        lows = np.minimum.accumulate(self.qos_low)
        highs = np.minimum.accumulate(self.qos_high)
        qos = float(np.interp(cores, xs, self.monotone()))
        low = min(float(np.interp(cores, xs, lows)), qos)
        high = max(float(np.interp(cores, xs, highs)), qos)
        return qos, low, high, not (xs[0] <= cores <= xs[-1])


def why_not(run: Run) -> str | None:
    """Why ``run`` cannot give CPU curves (one line), or None when it can."""
    kinds = {b.get("kind") for b in ([run.bubble] if run.bubble else run.effective.get("bubbles") or [])}
    if run.axis != "count" or not kinds or not kinds <= CPU_ONLY_KINDS:
        return (f"a CPU curve needs a count sweep of CPU-only bubbles (bubble.kind: cpu); this run sweeps "
                f"{run.axis} of {', '.join(sorted(str(k) for k in kinds)) or 'no'} bubbles")  # fmt: skip
    facts = run.manifest.cpu_demand or {}
    if not float(facts.get("duty_per_set") or 0) > 0:
        return "its bubbles ask for no CPU (cpu_duty 0)"
    return None


def curves(run: Run, percentiles: Sequence[float] = (50,)) -> list[CpuCurve]:
    """Every setting's CPU curve at each percentile; [] when :func:`why_not` has a reason."""
    if why_not(run) is not None:
        return []
    per_set = float((run.manifest.cpu_demand or {})["duty_per_set"])
    per_session = str((run.manifest.environment or {}).get("sched_autogroup")) == "1"
    out = []
    for curve in summaries.setting_curves(run):
        good = [p for p in curve.points if p.functional and len(p.samples)]
        if len(good) < 2 or good[0].value != 0:
            continue  # the base must be the workload with nothing beside it
        for q in percentiles:
            c = curve_of(curve.setting, q, good)  # its points' size_mb holds the sweep value: a count
            out.append(CpuCurve(c.setting, c.percentile, c.base_latency_ms,
                                tuple(p.size_mb * per_set for p in c.points), tuple(p.qos for p in c.points),
                                tuple(p.qos_low for p in c.points), tuple(p.qos_high for p in c.points),
                                per_session))  # fmt: skip
    return out
