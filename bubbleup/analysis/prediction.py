"""Bubble-Up's steps 2 and 3: a co-runner's bubble score, and the QoS predicted from it.

- **Reporter curve**: the reporter's sensitivity curve (:mod:`bubbleup.analysis.sensitivity`, median)
  against the Bubble-Up bubble, measured on this machine by ``bubbleup calibrate`` and stored with
  the machine's fingerprint (:mod:`bubbleup.colocation.reporter`).
- **Score**: the co-runner runs beside the reporter (a ``bubbleup score`` run: reporter alone, then
  beside the co-runner, repeats alternating); the reporter's QoS ``q`` = its latency alone / beside,
  with the hierarchical-bootstrap interval ``compare`` uses. The score is the bubble size at which
  the reporter's curve, made non-increasing (isotonic regression), falls to ``q``: the first
  crossing, linearly interpolated between measured sizes. The interval maps ``q``'s interval the
  same way. A ``q`` at or above the curve's start scores the smallest size measured (no pressure
  the reporter can see); one below its end lies beyond the range and is clamped there, and said.
- **Prediction**: per setting of a run with a sensitivity curve, the QoS at the score (linear
  interpolation on the workload's own curve, made non-increasing the same way), its interval the
  widest of the curve's interval over the score's interval, and the latency ``base / qos``.
- **Sharing CPUs** (beyond the paper): given the workload's CPU curves
  (:mod:`bubbleup.analysis.cpu_curve`) and the co-runner's measured CPU use, the memory QoS is
  multiplied by the CPU curve's QoS at those cores (intervals multiplied bound by bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bubbleup.analysis.cpu_curve import CpuCurve
from bubbleup.analysis.sensitivity import SensitivityCurve
from bubbleup.analysis.summary import SettingCurve
from bubbleup.formatting import sig3
from bubbleup.store.reader import Run

INSIDE, BELOW, ABOVE = "inside", "below", "above"


@dataclass(frozen=True)
class Score:
    """A co-runner's bubble score: the Bubble-Up bubble size that slows the reporter as much."""

    size_mb: float
    low_mb: float
    high_mb: float
    where: str  # inside, below (no pressure the reporter sees) or above the reporter curve's range
    reporter_qos: float
    reporter_qos_low: float
    reporter_qos_high: float
    #: cores the co-runner keeps busy: alone and unpinned when scored by ``colocation.workflow.score_command`` (its
    #: ``cpu_demand`` run); :func:`score_of_run` alone gives the score run's, confined to the reporter's spare CPUs
    corunner_cores: float = math.nan
    corunner_rss_mb: float = math.nan  # its resident memory once started (all its processes)
    corunner_rss_peak_mb: float = math.nan
    #: The cores of each of its programs, each in a session of its own (summing to ``corunner_cores``); empty when
    #: not measured per program (a score given by hand, a score run read alone): then one session
    corunner_sessions: tuple[float, ...] = ()

    @property
    def sessions(self) -> tuple[float, ...]:
        """The cores each of the co-runner's sessions keeps busy (what a CPU curve reads: CpuCurve.load)."""
        return self.corunner_sessions or (self.corunner_cores,)

    def sentence(self, span: tuple[float, float]) -> str:
        interval = f"{sig3(self.low_mb)}-{sig3(self.high_mb)} MiB"
        q = f"{self.reporter_qos:.3f} ({self.reporter_qos_low:.3f}-{self.reporter_qos_high:.3f})"
        text = f"bubble score {sig3(self.size_mb)} MiB (95% interval {interval}); the reporter ran at {q} "
        text += "of its speed alone"
        if self.where == ABOVE:
            text += f"; beyond the reporter curve's range (largest bubble measured: {sig3(span[1])} MiB)"
        elif self.where == BELOW:
            text += "; no pressure the reporter can see"
        return text


@dataclass(frozen=True)
class Prediction:
    setting: str
    percentile: float
    score_mb: float
    qos: float
    qos_low: float
    qos_high: float
    latency_ms: float
    base_latency_ms: float
    outside: bool  # the score (or the cores) lies beyond the measured range (clamped to its end)
    span: tuple[float, float]
    memory_qos: float = math.nan  # the memory curve's QoS at the score (= qos without a CPU curve)
    cores: float = math.nan  # the co-runner's CPU use, when a CPU curve was read
    cpu_qos: float = math.nan  # the CPU curve's QoS at the co-runner's load
    cpu_load: float = math.nan  # where the co-runner sits on the CPU curve (CpuCurve.load of its cores)
    cores_span: tuple[float, float] | None = None  # the CPU curve's measured cores, when one was read
    score_outside: bool = False  # the score (not the cores) lies beyond the memory curve's sizes
    n_sessions: int = 1  # the co-runner's programs, each a session of its own
    #: the co-runner slowed the reporter more than its largest bubble did: the score is that bubble's size, a floor
    score_clamped: bool = False

    def sentence(self) -> str:
        stat = "median" if self.percentile == 50 else f"p{self.percentile:g}"
        text = (f"{self.setting}: predicted QoS {self.qos:.3f} ({self.qos_low:.3f}-{self.qos_high:.3f}), {stat} "
                f"{sig3(self.latency_ms)} ms against {sig3(self.base_latency_ms)} ms alone")  # fmt: skip
        if not math.isnan(self.cpu_qos):
            n = self.n_sessions
            grouped = (f", {self.cores:.2f} cores in {'one session' if n == 1 else f'{n} sessions'}"
                       if self.cpu_load < self.cores - 1e-9 else "")  # fmt: skip
            text += (f" (memory {self.memory_qos:.3f} at the score x CPU {self.cpu_qos:.3f} at "
                     f"{self.cpu_load:.2f} cores{grouped})")  # fmt: skip
        beyond = []
        if self.score_clamped:
            beyond.append(f"the co-runner slowed the reporter more than its largest bubble did (the score, "
                          f"{sig3(self.score_mb)} MiB, is at least that)")  # fmt: skip
        if self.score_outside:
            beyond.append(f"the score {sig3(self.score_mb)} MiB lies outside the measured sizes "
                          f"({sig3(self.span[0])}-{sig3(self.span[1])} MiB)")  # fmt: skip
        if self.cores_span is not None and not self.cores_span[0] <= self.cpu_load <= self.cores_span[1]:
            beyond.append(f"{self.cpu_load:.2f} cores lie outside the CPU curve's measured cores "
                          f"({self.cores_span[0]:g}-{self.cores_span[1]:g})")  # fmt: skip
        if self.outside:
            reason = " and ".join(beyond) or "the score lies beyond the measured range"
            text += f"; {reason}: read as at least this slow"
        return text


def invert(curve: SensitivityCurve, qos: float) -> tuple[float, str]:
    """The smallest bubble size at which ``curve`` (made non-increasing) falls to ``qos``, and where it lies."""
    sizes, fitted = curve.sizes, curve.monotone()
    if qos >= fitted[0]:
        return float(sizes[0]), BELOW
    if qos < fitted[-1]:
        return float(sizes[-1]), ABOVE
    i = int(np.flatnonzero(fitted <= qos)[0])  # first measured size at or below qos; i >= 1
    hi_q, lo_q = fitted[i - 1], fitted[i]
    frac = (hi_q - qos) / (hi_q - lo_q) if hi_q > lo_q else 0.0
    return float(sizes[i - 1] + frac * (sizes[i] - sizes[i - 1])), INSIDE


def score(curve: SensitivityCurve, qos: float, low: float, high: float, **corunner: Any) -> Score:
    size, where = invert(curve, qos)
    # A lower QoS means more pressure: the interval's low QoS gives the high size, and vice versa.
    low_mb, _ = invert(curve, high)
    high_mb, _ = invert(curve, low)
    return Score(size, min(low_mb, size), max(high_mb, size), where, qos, low, high, **corunner)


def predict(curves: Sequence[SensitivityCurve], s: Score, percentile: float = 50,
            cpu: Mapping[str, CpuCurve] | None = None) -> list[Prediction]:  # fmt: skip
    """Per setting, the QoS at ``s``; with ``cpu`` (setting -> CPU curve at the same percentile), times the
    CPU curve's QoS at the score's measured cores (as one task at most per session, where the kernel groups by
    session: :meth:`CpuCurve.load`).
    ValueError when ``cpu`` is given and the score has none."""
    if cpu is not None and math.isnan(s.corunner_cores):
        raise ValueError("a prediction on shared CPUs needs the co-runner's measured CPU use (cores)")
    out = []
    for c in curves:
        if c.percentile != percentile:
            continue
        sizes, fitted = c.sizes, c.monotone()
        lows = np.minimum.accumulate([p.qos_low for p in c.points])  # bands follow the same "never better" rule
        highs = np.minimum.accumulate([p.qos_high for p in c.points])
        qos = float(np.interp(s.size_mb, sizes, fitted))
        grid = np.linspace(s.low_mb, s.high_mb, 9)
        low = float(min(np.interp(grid, sizes, lows).min(), qos))
        high = float(max(np.interp(grid, sizes, highs).max(), qos))
        score_outside = not (sizes[0] <= s.size_mb <= sizes[-1])
        outside = score_outside or s.where == ABOVE
        memory, cores, load, cpu_qos, cores_span = qos, math.nan, math.nan, math.nan, None
        if cpu is not None:
            if c.setting not in cpu:
                continue  # no CPU curve for this setting: nothing honest to say on shared CPUs
            cores, load = s.corunner_cores, cpu[c.setting].load(s.sessions)
            cpu_qos, cpu_low, cpu_high, beyond = cpu[c.setting].at(load)
            cores_span = (float(cpu[c.setting].cores[0]), float(cpu[c.setting].cores[-1]))
            qos, low, high, outside = qos * cpu_qos, low * cpu_low, high * cpu_high, outside or beyond
        out.append(Prediction(c.setting, c.percentile, s.size_mb, qos, low, high,
                              c.base_latency_ms / qos if qos > 0 else math.inf, c.base_latency_ms, outside,
                              c.span, memory, cores, cpu_qos, load, cores_span, score_outside,
                              len(s.sessions), s.where == ABOVE))  # fmt: skip
    return out


def alone_beside_qos(curve: SettingCurve, percentile: float = 50) -> tuple[float, float, float] | None:
    """Latency alone (0) / latency beside the co-runner (1) at ``percentile`` (the sensitivity curves' own:
    the QoS is read off, or set beside, those curves), with its 95% interval (repeats as replicates); None
    when either point has no samples."""
    from bubbleup.analysis.compare import ratio_interval

    pts = {p.value: p for p in curve.points if p.functional and len(p.samples)}
    if 0.0 not in pts or 1.0 not in pts:
        return None
    slowdown, low, high = ratio_interval(pts[0.0].replicates(), pts[1.0].replicates(), percentile)
    return 1 / slowdown, 1 / high, 1 / low


def measured_qos(run: Run, percentile: float = 50) -> dict[str, tuple[float, float, float]]:
    """Per setting of an alone/beside run (values 0 and 1): :func:`alone_beside_qos`."""
    from bubbleup.analysis.summary import setting_curves

    found = {c.setting: alone_beside_qos(c, percentile) for c in setting_curves(run)}
    return {setting: q for setting, q in found.items() if q is not None}


def score_of_run(run: Run, reporter: SensitivityCurve) -> Score:
    """The bubble score from a ``bubbleup score`` run: reporter alone at 0, beside the co-runner at 1.

    ValueError (one line) when the run does not hold both points with samples.
    """
    measured = list(measured_qos(run, reporter.percentile).values())
    if not measured:
        raise ValueError(f"{run.path}: a score run needs the reporter's samples alone (0) and beside the "
                         f"co-runner (1)")  # fmt: skip
    qos, low, high = measured[0]
    corunner: dict[str, float] = {}
    b = run.bubbles
    if b is not None and len(b):
        per_repeat = b[b["value"] == 1].groupby("repeat")  # a mix's programs are one repeat's several bubbles
        corunner = {"corunner_cores": float(per_repeat["core_share"].sum().mean()),
                    "corunner_rss_mb": float(per_repeat["rss_ready_mb"].sum().mean()),
                    "corunner_rss_peak_mb": float(per_repeat["rss_peak_mb"].sum().max())}  # fmt: skip
    return score(reporter, qos, low, high, **corunner)
