"""Sensitivity curves: Bubble-Up's step 1, as data that other commands read.

For a run that sweeps bubble *size* (``sweep.axis: size_mb``), every setting's **sensitivity curve**
is its normalised QoS against the bubble's size, ``qos(s) = latency(s_0) / latency(s)``, where
``s_0`` is the smallest size measured that worked (a 0 MiB Bubble-Up bubble burns its CPU apart from
the workload and touches no memory, so a sweep that starts at 0 normalises by the workload with no
memory pressure). The latency of a point is :func:`bubbleup.analysis.stats.replicate_statistic`
(the mean over repeats of each repeat's percentile), at the median and at p95. Each QoS has a 95%
interval from the same hierarchical bootstrap ``compare`` uses (repeats, then samples within each),
the base point and the loaded point resampled independently.

The curves are written to ``sensitivity.csv`` in the run directory (:data:`COLUMNS`), and read back
by :func:`read`; :mod:`bubbleup.analysis.prediction` interpolates them. A curve is not forced to be
monotone here: the file holds what was measured. :meth:`SensitivityCurve.monotone` gives the
non-increasing fit (isotonic regression) that an inversion (a bubble score) needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bubbleup.analysis import summary as summaries
from bubbleup.analysis.cliff import CurvePoint
from bubbleup.analysis.stats import CONFIDENCE, hierarchical_resamples, replicate_statistic
from bubbleup.store.layout import SENSITIVITY
from bubbleup.store.reader import Run

FILE = SENSITIVITY
#: The percentiles every curve is written at: the median, and the tail a latency SLO is usually set on.
PERCENTILES = (50, 95)
N_RESAMPLES = 2000
SEED = 0
COLUMNS = ("setting", "percentile", "size_mb", "latency_ms", "qos", "qos_low", "qos_high", "n", "repeats",
           "base_size_mb", "base_latency_ms")  # fmt: skip


@dataclass(frozen=True)
class SensitivityPoint:
    size_mb: float
    latency_ms: float
    qos: float  # base latency / this latency: 1 = unharmed, 0.5 = twice as slow
    qos_low: float
    qos_high: float
    n: int
    repeats: int


@dataclass(frozen=True)
class SensitivityCurve:
    """One setting's normalised QoS against bubble size, at one percentile."""

    setting: str
    percentile: float
    base_size_mb: float
    base_latency_ms: float
    points: tuple[SensitivityPoint, ...]  # ascending size, the base point first (qos 1)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([p.size_mb for p in self.points], dtype=float)

    @property
    def qos(self) -> np.ndarray:
        return np.array([p.qos for p in self.points], dtype=float)

    @property
    def span(self) -> tuple[float, float]:
        return float(self.sizes[0]), float(self.sizes[-1])

    def monotone(self) -> np.ndarray:
        """The closest non-increasing QoS (least squares, isotonic regression): more pressure never helps."""
        from scipy.optimize import isotonic_regression

        return np.asarray(isotonic_regression(self.qos, increasing=False).x)


def curves(run: Run, percentiles: Sequence[float] = PERCENTILES) -> list[SensitivityCurve]:
    """Every setting's sensitivity curve at each percentile; [] unless the run sweeps bubble size."""
    if run.axis != "size_mb":
        return []
    out = []
    for curve in summaries.setting_curves(run):
        good = [p for p in curve.points if p.functional and len(p.samples)]
        if len(good) < 2:
            continue
        for q in percentiles:
            out.append(curve_of(curve.setting, q, good))
    return out


def curve_of(setting: str, q: float, good: Sequence[CurvePoint]) -> SensitivityCurve:
    """Normalised QoS over a setting's working points (the first is the base), at percentile ``q``."""
    rng = np.random.default_rng(SEED)
    base_reps = [r for r in good[0].replicates() if len(r)]
    base = replicate_statistic(base_reps, q)
    base_boot = hierarchical_resamples(base_reps, rng, N_RESAMPLES, q)
    tail = (1 - CONFIDENCE) / 2 * 100
    points = []
    for p in good:
        reps = [r for r in p.replicates() if len(r)]
        latency = replicate_statistic(reps, q)
        # The base point too: its QoS is 1 by definition, its interval says how well the base is known.
        low, high = np.percentile(base_boot / hierarchical_resamples(reps, rng, N_RESAMPLES, q), [tail, 100 - tail])
        points.append(SensitivityPoint(p.value, latency, base / latency if latency > 0 else math.nan,
                                       float(low), float(high), sum(len(r) for r in reps), len(reps)))  # fmt: skip
    return SensitivityCurve(setting, float(q), good[0].value, base, tuple(points))


def frame(found: Sequence[SensitivityCurve]) -> pd.DataFrame:
    rows = [{"setting": c.setting, "percentile": c.percentile, "size_mb": p.size_mb, "latency_ms": p.latency_ms,
             "qos": p.qos, "qos_low": p.qos_low, "qos_high": p.qos_high, "n": p.n, "repeats": p.repeats,
             "base_size_mb": c.base_size_mb, "base_latency_ms": c.base_latency_ms}
            for c in found for p in c.points]  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write(run: Run) -> Path | None:
    """Write ``sensitivity.csv`` into the run directory (None, and nothing written, for a count sweep)."""
    found = curves(run)
    if not found:
        return None
    path = run.path / FILE
    frame(found).to_csv(path, index=False, float_format="%.6g")
    return path


def read(path: Path) -> list[SensitivityCurve]:
    """The curves of a ``sensitivity.csv`` (a run directory or the file itself), in file order."""
    path = path / FILE if path.is_dir() else path
    data = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in data.columns]
    if missing:
        raise ValueError(f"{path}: not a sensitivity file (missing columns: {', '.join(missing)})")
    out = []
    for (setting, q), rows in data.groupby(["setting", "percentile"], sort=False):
        rows = rows.sort_values("size_mb")
        pts = tuple(SensitivityPoint(float(r.size_mb), float(r.latency_ms), float(r.qos), float(r.qos_low),
                                     float(r.qos_high), int(r.n), int(r.repeats))
                    for r in rows.itertuples())  # fmt: skip
        first = rows.iloc[0]
        out.append(SensitivityCurve(str(setting), float(q), float(first["base_size_mb"]),  # type: ignore[arg-type]
                                    float(first["base_latency_ms"]), pts))  # fmt: skip
    return out
