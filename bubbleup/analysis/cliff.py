"""The contention cliff: where a setting's latency stops degrading gradually and breaks.

Definition
----------
For one setting, take the points of its curve in order of pressure ``v_0 < v_1 < ...``
(bubble count, or bubble size in MiB), each with its pooled timed samples, *level* ``m_i`` (their
interquartile mean, IQM: the mean of the middle half) and ``L_i = ln m_i``. The **cliff** is the
first point ``k`` that is either

* **non-functional**: some attempt at ``v_k`` failed or timed out (the workload died, ran out
  of memory, or hung), or
* a **break**: the step from ``v_{k-1}`` to ``v_k`` meets all six conditions

  1. *effect*: ``m_k / m_{k-1} >= min_jump`` (1.2: a rise of at least 20%);
  2. *kink*: the step is at least ``min_kink`` (1.5) times what the gradual trend predicts,
     both on log latency and on latency. The trend is the average slope per unit of pressure
     from ``v_0`` to ``v_{k-1}`` (floored at 0), times the step's width ``v_k - v_{k-1}``; for
     the first step, which has no history, it is the slope of the following step (0 if none),
     so a level jump at the first bubble counts but the first step of a straight line does not;
  3. *significance*: the lower bound of the 95% bootstrap CI of ``m_k / m_{k-1}`` (independent
     resampling of both points' samples, percentile method, 2000 resamples) exceeds the
     trend's predicted ratio ``exp(trend)`` (itself >= 1): the break is not sampling noise;
  4. *consistency*: when the points share repeats, every shared repeat's own level rises by
     more than the trend predicts: one drifted repeat cannot make a cliff;
  5. *persistence*: when a higher pressure was measured and worked, its level keeps at least
     half of the jump (on log latency): more pressure does not make contention go away, so a
     spike that vanishes at the next point is interference (another job, a page-cache flush),
     not a cliff. A cliff at the last measured point cannot be checked, and is reported;
  6. *degradation*: ``m_k / m_0 >= min_jump``: a cliff is a fall below unloaded service, so a
     rise that only climbs back out of a dip (latency still no worse than with the least
     pressure) is not one.

The **tolerated pressure** is the last point before the cliff (``None`` when the cliff is the
first point). When no point qualifies the answer is *no cliff in the measured range*.

Why these choices
-----------------
The level is the IQM, not the median. Where CPU demand just passes the cores an inference is
preempted or not, and latency has two modes; the median sits in whichever holds half the inferences,
so it jumps from one mode to the other as their shares pass one half, and with it the cliff's
location. On four runs of the main job (Xeon VM, 2026-12-06) the median put the cliff at the same
count in all four for 5 of 12 settings, the IQM for 8 of 12, and at the count CPU demand predicts
(4) in 42 of 48 verdicts against 21. The IQM moves with the shares, and still ignores the outer
quarters (a preempted tail of fewer than a quarter of the inferences, a GC pause). The tables and
figures keep the median.

Log latency makes "gradual" scale-free: steady relative growth (a constant ratio per bubble)
is a straight line, and the cliff is where the slope or the level jumps, as the TX2 study
saw at the 5th bubble. Requiring the kink on linear latency too stops a straight line from a
small baseline (10, 20, 30 ms: a 2x first step in log space) from being called a cliff, and
requiring it on log latency stops a smooth exponential from being one. Per point we hold
tens to thousands of samples, so noise is measured, not guessed: the bootstrap gives each
step its own uncertainty. A change-point library (``ruptures``) was tried and not used as
the detector: on 4-10 points a penalised search needs a penalty with no principled value,
its minimum segment length hides a break at the last point, and it ignores the per-point
samples that tell us the noise; scipy's bootstrap serves where a library does.

How sure a verdict is: :mod:`bubbleup.analysis.confidence` judges a thousand resampled curves by the
same numeric core (:func:`step_codes` for conditions 1, 2, 5 and 6 and :func:`first_disagreeing` for
condition 4, both written for many curves at once): both apply the same conditions, except the CI of
condition 3, which the resampling itself replaces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from bubbleup.analysis.stats import iqm
from bubbleup.formatting import format_value, number, pressure, pressure_unit, times

BREAK = "break"
NON_FUNCTIONAL = "non-functional"
NONE = "none"
NO_DATA = "no data"
#: Levels are floored here (ms): a timer that rounds a trivial call to 0 must not divide by zero.
LEVEL_FLOOR = 1e-6


@dataclass(frozen=True)
class CliffRule:
    """The detector's parameters (documented in the module docstring)."""

    min_jump: float = 1.2
    min_kink: float = 1.5
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0


DEFAULT_RULE = CliffRule()


@dataclass(frozen=True)
class CurvePoint:
    """One pressure value of a setting's curve: its timed samples and whether the workload worked."""

    value: float
    samples: np.ndarray
    by_repeat: Mapping[int, np.ndarray] = field(default_factory=dict)
    functional: bool = True
    status: str = "ok"
    error: str = ""

    def replicates(self) -> list[np.ndarray]:
        """The point's samples as one array per repeat, in repeat order (the pooled samples if none)."""
        return [self.by_repeat[r] for r in sorted(self.by_repeat)] or [self.samples]


@dataclass(frozen=True)
class Cliff:
    """The detector's answer for one setting; ``kind`` is break, non-functional, none or no data."""

    setting: str
    axis: str
    kind: str
    at: float | None = None  # first pressure of the cliff
    tolerated: float | None = None  # last pressure before it
    jump: float | None = None  # m_at / m_previous (levels: interquartile means)
    jump_low: float | None = None  # its 95% CI
    jump_high: float | None = None
    expected_jump: float | None = None  # what the gradual trend predicted for that step
    slowdown: float | None = None  # m_at / m_first (break) or m_last / m_first (none)
    baseline: float | None = None  # the first (lowest) pressure measured
    measured_max: float | None = None  # highest pressure at which the workload worked
    first_failure: float | None = None  # lowest pressure at which it did not
    status: str = ""  # status of the failing point (non-functional)
    error: str = ""
    note: str = ""  # e.g. the largest step that did not qualify, and why
    fixed: float | None = None  # the other dimension: bubble size (count axis) or count (size axis)
    set_size: int = 1  # bubbles per set of kinds (``bubbles:``): a count sweep's value then counts sets

    @property
    def found(self) -> bool:
        return self.kind in (BREAK, NON_FUNCTIONAL)

    @property
    def location(self) -> float | None:
        """Where the cliff is (its first pressure); None for "no cliff in the measured range"."""
        return self.at if self.found else None

    def sentence(self) -> str:
        """The cliff in words, e.g. ``HH tolerates 3 bubbles of 512 MiB; its latency (IQM) rises 4.1x at 4``."""
        s = self.setting
        if self.kind == NO_DATA:
            return f"{s}: no measurements."
        if self.kind == NON_FUNCTIONAL and self.tolerated is None:
            why = f" ({self.status}{': ' + self.error if self.error else ''})"
            return f"{s} does not work even at {self._at(self.at)}{why}."
        if self.kind == NONE:
            change = _ratio_words(self.slowdown)
            return (
                f"{s} shows no cliff up to {self._pressure(self.measured_max)}; "
                f"its latency (IQM) {change} between {self._span()}."
            )
        head = f"{s} tolerates {self._pressure(self.tolerated)}"
        if self.kind == NON_FUNCTIONAL:
            why = f"{self.status}{': ' + self.error if self.error else ''}"
            return f"{head}; at {self._at(self.at)} it stops working ({why})."
        extra = []
        if self.jump_low is not None and not math.isnan(self.jump_low):
            extra.append(f"95% CI {times(self.jump_low)}-{times(self.jump_high)}")
        if self.slowdown is not None and self.tolerated != self.baseline:
            extra.append(f"{times(self.slowdown)} its latency {self._with(self.baseline)}")
        detail = f" ({'; '.join(extra)})" if extra else ""
        return f"{head}; its latency (IQM) rises {times(self.jump)} at {self._at(self.at)}{detail}."

    def short(self) -> str:
        """A verdict in a table cell: ``cliff at 4 bubbles``, ``none up to 5 bubbles``, ``stops working at 64 MiB``."""
        if self.kind == NO_DATA:
            return "no data"
        if self.kind == NON_FUNCTIONAL:
            where = "does not work at" if self.tolerated is None else "stops working at"
            return f"{where} {pressure(self.at, self.axis, self.set_size)}"
        if self.kind == NONE:
            return f"none up to {pressure(self.measured_max, self.axis, self.set_size)}"
        return f"cliff at {pressure(self.at, self.axis, self.set_size)}"

    # -- wording helpers ----------------------------------------------------------------------
    def _at(self, value: float | None) -> str:
        return format_value(value, self.axis)

    def _span(self) -> str:
        lo, hi = number(self.baseline), number(self.measured_max)
        return f"{lo} and {hi} MiB" if self.axis == "size_mb" else f"{lo} and {hi} {self._unit}"

    def _with(self, value: float | None) -> str:
        if self.axis == "count" and value == 0:
            return "with no bubbles"
        return f"at {pressure(value, self.axis, self.set_size)}"

    @property
    def _unit(self) -> str:
        return pressure_unit(self.axis, self.set_size)

    def _pressure(self, value: float | None) -> str:
        """``3 bubbles of 512 MiB`` (count axis) or ``a 512 MiB bubble`` (size axis); for a set of kinds
        ``2 bubble sets (4 bubbles, largest 512 MiB)`` or ``2 bubble sets at 512 MiB (4 bubbles)``."""
        v = number(value)
        fixed = number(self.fixed) if self.fixed is not None and not math.isnan(self.fixed) else None
        if self.axis == "size_mb":
            if self.set_size > 1 and self.fixed is not None and fixed is not None:  # fixed counts bubbles, not sets
                return f"{pressure(self.fixed / self.set_size, 'count', self.set_size)} at {v} MiB ({fixed} bubbles)"
            if fixed in (None, "1"):
                return f"a {v} MiB bubble"
            return f"{fixed} bubbles of {v} MiB"
        if v == "0":
            return "no bubbles"
        if self.set_size > 1 and value is not None:  # the value counts sets of kinds started together
            largest = f", largest {fixed} MiB" if fixed else ""
            return f"{pressure(value, 'count', self.set_size)} ({number(value * self.set_size)} bubbles{largest})"
        return pressure(value, "count") + (f" of {fixed} MiB" if fixed else "")


class _CliffBase(TypedDict):
    """The fields every answer of :func:`detect` for one curve shares."""

    setting: str
    axis: str
    fixed: float | None
    first_failure: float | None


class _CliffSpan(_CliffBase):
    """... and those of an answer that looked at the whole working range."""

    baseline: float
    measured_max: float
    slowdown: float


def _ratio_words(ratio: float | None) -> str:
    if ratio is None or math.isnan(ratio):
        return "could not be compared"
    if abs(ratio - 1) < 0.05:
        return f"stays within 5% ({times(ratio)})"
    return f"{'rises' if ratio > 1 else 'falls'} {times(ratio)} gradually"


def within_one_step(a: float | None, b: float | None, values: Sequence[float]) -> bool:
    """Two cliff locations agree: both "no cliff", the same pressure, or neighbouring measured pressures."""
    if a is None or b is None:
        return a is None and b is None
    if a == b:
        return True
    index = {float(v): i for i, v in enumerate(values)}
    return float(a) in index and float(b) in index and abs(index[float(a)] - index[float(b)]) <= 1


def ratio_ci(before: np.ndarray, after: np.ndarray, rule: CliffRule = DEFAULT_RULE) -> tuple[float, float]:
    """Bootstrap CI of IQM(after) / IQM(before), resampling both independently."""
    before = np.asarray(before, dtype=float)
    after = np.asarray(after, dtype=float)
    if len(before) < 2 or len(after) < 2:
        return (math.nan, math.nan)
    point = float(iqm(after) / iqm(before))
    if np.ptp(before) == 0 and np.ptp(after) == 0:
        return (point, point)

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(iqm(y, axis) / iqm(x, axis))

    from scipy import stats  # here, not at import: scipy.stats takes a second to load, and a run needs it only
    # once it judges its cliffs (``bubbleup validate`` and every refusal of bad input never do)

    res = stats.bootstrap(
        (before, after),
        ratio,
        n_resamples=rule.n_resamples,
        confidence_level=rule.confidence,
        method="percentile",
        paired=False,
        vectorized=True,
        batch=max(1, min(rule.n_resamples, 4_000_000 // (len(before) + len(after)))),
        rng=np.random.default_rng(rule.seed),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


#: Why a step fails conditions 1, 6, 2 or 5 (in the order they are checked); ``PASS``: it meets all four.
#: Codes rather than words, so that :func:`step_codes` can judge thousands of resampled curves at once.
PASS, SMALL, NOT_DEGRADED, IN_TREND, TRANSIENT = range(5)


def step_codes(
    values: np.ndarray, levels: np.ndarray, rule: CliffRule = DEFAULT_RULE
) -> tuple[np.ndarray, np.ndarray]:
    """Conditions 1, 2, 5 and 6 for every step of many curves at once: the detector's numeric core.

    ``levels`` is (curves, points) on the pressures ``values`` (ascending, working points only),
    floored above 0. Returns ``(codes, expected_log)``, both (curves, points): column ``k`` judges the
    step from point k-1 to k (column 0 has no step and holds ``SMALL``) and the log rise the gradual
    trend predicts for it. :func:`detect` calls it with one row; resampling calls it with one per resample.
    """
    m = np.atleast_2d(np.asarray(levels, dtype=float))
    values = np.asarray(values, dtype=float)
    n_curves, n = m.shape
    codes = np.full((n_curves, n), SMALL, dtype=np.int8)
    expected_log = np.zeros((n_curves, n))
    if n < 2:
        return codes, expected_log
    logs = np.log(m)
    slope_log, slope_lin = np.zeros((n_curves, n)), np.zeros((n_curves, n))
    if n > 2:  # first step: no history, so compare with the step that follows
        width = values[2] - values[1]
        slope_log[:, 1] = np.maximum(0.0, (logs[:, 2] - logs[:, 1]) / width)
        slope_lin[:, 1] = np.maximum(0.0, (m[:, 2] - m[:, 1]) / width)
        span = values[1 : n - 1] - values[0]  # later steps: the average slope from v_0 to v_{k-1}
        slope_log[:, 2:] = np.maximum(0.0, (logs[:, 1 : n - 1] - logs[:, :1]) / span)
        slope_lin[:, 2:] = np.maximum(0.0, (m[:, 1 : n - 1] - m[:, :1]) / span)
    width = np.diff(values)
    expected_log[:, 1:] = slope_log[:, 1:] * width
    expected_lin = slope_lin[:, 1:] * width
    jump = m[:, 1:] / m[:, :-1]
    step_log = np.log(jump)
    transient = np.zeros_like(jump, dtype=bool)  # a step at the last point cannot be checked for persistence
    transient[:, :-1] = np.log(m[:, 2:] / m[:, :-2]) < 0.5 * step_log[:, :-1]
    codes[:, 1:] = np.select(
        [
            jump < rule.min_jump,
            m[:, 1:] / m[:, :1] < rule.min_jump,
            (step_log < rule.min_kink * expected_log[:, 1:]) | (m[:, 1:] - m[:, :-1] < rule.min_kink * expected_lin),
            transient,
        ],
        [SMALL, NOT_DEGRADED, IN_TREND, TRANSIENT],
        PASS,
    )
    return codes, expected_log


def first_disagreeing(before: np.ndarray, after: np.ndarray, expected_log: np.ndarray) -> np.ndarray:
    """Condition 4 for many curves: per curve, the first repeat (column) whose own level does not rise by
    more than the trend predicts, or -1 when every repeat measured at both points does.

    ``before``/``after`` are (curves, repeats) per-repeat levels, NaN where a repeat has no samples
    (it then has no say); ``expected_log`` is (curves,).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        bad = np.log(after / before) <= np.asarray(expected_log, dtype=float)[:, None]
    return np.where(bad.any(axis=1), bad.argmax(axis=1), -1)


def detect(
    setting: str, axis: str, curve: Sequence[CurvePoint], rule: CliffRule = DEFAULT_RULE, fixed: float | None = None
) -> Cliff:
    """Apply the module's definition to one setting's curve (points in any order)."""
    points = sorted((p for p in curve if not p.functional or len(p.samples) > 0), key=lambda p: p.value)
    if not points:
        return Cliff(setting, axis, NO_DATA, fixed=fixed)
    bad = next((i for i, p in enumerate(points) if not p.functional), None)
    good = points if bad is None else points[:bad]
    failure = points[bad] if bad is not None else None
    base = _CliffBase(setting=setting, axis=axis, fixed=fixed, first_failure=failure.value if failure else None)
    if not good:
        assert failure is not None  # nothing worked: the first point is the failure
        return Cliff(kind=NON_FUNCTIONAL, at=failure.value, status=failure.status, error=failure.error, **base)

    values = np.array([p.value for p in good], dtype=float)
    levels = floored_levels([p.samples for p in good])
    codes, expected = step_codes(values, levels, rule)
    best_rejected: tuple[float, str] | None = None
    for k in range(1, len(good)):
        expected_log = float(expected[0, k])
        jump = levels[k] / levels[k - 1]
        why = _reason(int(codes[0, k]), float(jump), float(levels[k] / levels[0]), expected_log, rule)
        if why is None:
            low, high = ratio_ci(good[k - 1].samples, good[k].samples, rule)
            why = _significance(good, k, low, expected_log)
            if why is None:
                return Cliff(
                    kind=BREAK,
                    at=float(values[k]),
                    tolerated=float(values[k - 1]),
                    jump=float(jump),
                    jump_low=low,
                    jump_high=high,
                    expected_jump=float(math.exp(expected_log)),
                    slowdown=float(levels[k] / levels[0]),
                    baseline=float(values[0]),
                    measured_max=float(values[-1]),
                    note=_failure_note(failure),
                    **base,
                )
        if jump > 1 and (best_rejected is None or jump > best_rejected[0]):
            best_rejected = (float(jump), f"largest step {jump:.2f}x at {number(values[k])}: {why}")

    note = best_rejected[1] if best_rejected else "latency never rises from one point to the next"
    common = _CliffSpan(
        baseline=float(values[0]), measured_max=float(values[-1]), slowdown=float(levels[-1] / levels[0]), **base
    )
    if failure is not None:
        return Cliff(
            kind=NON_FUNCTIONAL,
            at=failure.value,
            tolerated=float(values[-1]),
            status=failure.status,
            error=failure.error,
            note=note,
            **common,
        )
    return Cliff(kind=NONE, note=note, **common)


def floored_levels(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Each point's level (IQM), floored at 1 ns: a timer that rounds a trivial call to 0 must not divide by 0."""
    return np.maximum(np.array([iqm(x) for x in samples], dtype=float), LEVEL_FLOOR)


def _reason(code: int, jump: float, degradation: float, expected_log: float, rule: CliffRule) -> str | None:
    """Why a step failed conditions 1, 6, 2 or 5 (effect, degradation, kink, persistence), or None."""
    if code == SMALL:
        return f"below the {rule.min_jump:.2g}x minimum"
    if code == NOT_DEGRADED:
        return f"still only {degradation:.2f}x the latency at the least pressure"
    if code == IN_TREND:
        return f"in line with the trend (which predicts {math.exp(expected_log):.2f}x)"
    if code == TRANSIENT:
        return "not sustained at the next pressure (a transient spike)"
    return None


def _significance(good: Sequence[CurvePoint], k: int, low: float, expected_log: float) -> str | None:
    """Why step k fails conditions 3-4 (significance, consistency across repeats), or None."""
    threshold = math.exp(expected_log)
    if math.isnan(low):
        return "too few samples to tell it from noise"
    if low <= threshold:
        return f"not significant (95% CI of the jump starts at {low:.2f}x)"
    before, after = good[k - 1].by_repeat, good[k].by_repeat
    shared = [r for r in sorted(set(before) & set(after)) if len(before[r]) and len(after[r])]
    if shared:
        b = np.array([[iqm(before[r]) for r in shared]], dtype=float)
        a = np.array([[iqm(after[r]) for r in shared]], dtype=float)
        first = int(first_disagreeing(b, a, np.array([expected_log]))[0])
        if first >= 0:
            return f"not seen in repeat {shared[first] + 1}"  # from 1 in words
    return None


def _failure_note(failure: CurvePoint | None) -> str:
    if failure is None:
        return ""
    return f"non-functional from {number(failure.value)} ({failure.status})"
