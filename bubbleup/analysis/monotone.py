"""Is the pressure dial monotone? Bubble-Up's first rule for a bubble is that more of it never helps.

A setting's curve *falls beyond noise* when some point's median CI lies wholly below the CI of a
point at lower pressure: more bubbles made the workload measurably faster. That is not contention
going away; it is the scheduler placing the workload differently (README "Where bubbles sit"), and
a cliff read off such a curve is not to be trusted. Works on a :func:`summarise` frame.

A fall must also be large enough to matter: with hundreds of samples per point the CIs are narrow,
and a fall of 2% beyond them is real but says nothing about placement, so falls under
``MIN_FALL`` (5%) are left out.

And it must be larger than the run's own repeat-to-repeat noise. A point's CI pools its samples as if
they were independent, but on a shared VM a kernel's speed wanders for tens of milliseconds to seconds
at a time (a 2-8 MiB numpy kernel here: 0.104 or 0.120 ms per inference, switching every 50-100 ms and
sometimes holding for a whole 1 s point), so two points a second apart differ beyond both CIs with no
pressure at all: a memory-only bubble that presses on nothing was "faster" in 4 of 22 quiet runs. With
two or more repeats, the spread of each point's repeat medians measures that wander: pooled over the
whole run (the within-group mean square of log repeat medians, one-way ANOVA's error term), it gives a
t-test of each fall, at ``FALSE_ALARM`` for the whole run (Bonferroni over every pair compared). A run
of one repeat cannot measure it, and falls are then judged by the CIs alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bubbleup.analysis.stats import t_quantile
from bubbleup.formatting import format_value, ms, pressure, times
from bubbleup.store.reader import Run
from bubbleup.store.records import STATUS_OK

#: The smallest fall reported: the slower median over the faster one.
MIN_FALL = 1.05
#: The chance, for a whole run, that noise alone is reported as a fall (when repeats measure the noise).
FALSE_ALARM = 0.05


@dataclass(frozen=True)
class RepeatNoise:
    """How far a point's median moves between repeats of this run: the pooled standard deviation of the
    log repeat medians about their point's mean, and its degrees of freedom."""

    sd: float
    df: int

    def threshold(self, n_high: int, n_low: int, comparisons: int) -> float:
        """The least log-fall between points of ``n_high`` and ``n_low`` repeats that this noise does not
        explain, one-sided at ``FALSE_ALARM`` shared by ``comparisons`` pairs."""
        crit = t_quantile(self.df, 1.0 - 2.0 * FALSE_ALARM / max(1, comparisons))  # one-sided at FALSE_ALARM
        return crit * self.sd * math.sqrt(1.0 / n_high + 1.0 / n_low)


def repeat_noise(summary: pd.DataFrame) -> RepeatNoise | None:
    """The run's repeat-to-repeat noise from a :func:`summarise` frame; None when no point has two repeats."""
    if summary.empty:
        return None
    ok = summary[(summary["status"] == STATUS_OK) & (summary["n_repeats"] >= 2) & summary["rep_log_sd"].notna()]
    df = int((ok["n_repeats"] - 1).sum())
    if df <= 0:
        return None
    var = float(((ok["n_repeats"] - 1) * ok["rep_log_sd"] ** 2).sum()) / df
    return RepeatNoise(math.sqrt(var), df)


@dataclass(frozen=True)
class Fall:
    """The largest fall of one setting's curve: from ``high_value`` down to ``low_value`` at more pressure."""

    setting: str
    axis: str
    high_value: float  # the lower pressure, with the slower latency
    low_value: float  # the higher pressure, with the faster latency
    high_ms: float
    low_ms: float
    high_ci_low_ms: float
    low_ci_high_ms: float
    #: The run's repeat-to-repeat noise (sd of log medians) the fall exceeded; NaN for a single-repeat run.
    noise_sd: float = math.nan
    set_size: int = 1  # bubbles per set of kinds (``bubbles:``): a count sweep's value then counts sets

    @property
    def ratio(self) -> float:
        return self.high_ms / self.low_ms

    def sentence(self) -> str:
        """``HH is not monotone: 42.8 ms at 5 bubbles but 17.6 ms at 6 (2.43x faster, beyond both CIs)``."""
        at = pressure(self.high_value, self.axis, self.set_size)
        return (
            f"{self.setting} is not monotone: {ms(self.high_ms)} at {at} "
            f"but {ms(self.low_ms)} at {format_value(self.low_value, self.axis)} "
            f"({times(self.ratio)} faster with more pressure, beyond both 95% CIs"
            + ("" if math.isnan(self.noise_sd) else f" and the repeat-to-repeat noise of this run, {self.noise_sd:.1%}")
            + ")"
        )


def falls(summary: pd.DataFrame, min_ratio: float = MIN_FALL, set_size: int = 1) -> list[Fall]:
    """Per setting (summary order), its largest fall beyond both CIs, of at least ``min_ratio`` and beyond
    the run's repeat-to-repeat noise (when repeats measure it); settings that never fall so are left out.
    ``set_size`` is the run's bubbles per set, for the sentence's words only (the summary does not carry it)."""
    out: list[Fall] = []
    if summary.empty:
        return out
    noise = repeat_noise(summary)
    groups = [(str(s), list(g[g["status"] == STATUS_OK].sort_values("value").itertuples(index=False)))
              for s, g in summary.groupby("setting", sort=False)]  # fmt: skip
    comparisons = sum(len(pts) * (len(pts) - 1) // 2 for _, pts in groups)
    for setting, pts in groups:
        best: Fall | None = None
        for i, hi in enumerate(pts):
            for lo in pts[i + 1 :]:
                if any(math.isnan(float(x)) for x in (hi.ci_low_ms, lo.ci_high_ms, hi.median_ms, lo.median_ms)):
                    continue
                if not float(lo.ci_high_ms) < float(hi.ci_low_ms):
                    continue
                if noise is not None and int(hi.n_repeats) >= 1 and int(lo.n_repeats) >= 1:
                    fall_log = float(hi.rep_log_mean) - float(lo.rep_log_mean)
                    if not fall_log > noise.threshold(int(hi.n_repeats), int(lo.n_repeats), comparisons):
                        continue
                fall = Fall(setting, str(hi.axis), float(hi.value), float(lo.value), float(hi.median_ms),
                            float(lo.median_ms), float(hi.ci_low_ms), float(lo.ci_high_ms),
                            noise.sd if noise is not None else math.nan, set_size)  # fmt: skip
                if fall.ratio >= min_ratio and (best is None or fall.ratio > best.ratio):
                    best = fall
        if best is not None:
            out.append(best)
    return out


def falls_in(run: Run, summary: pd.DataFrame | None = None) -> list[Fall]:
    """:func:`falls` of a run as its verdicts are judged (:func:`bubbleup.analysis.speed.for_verdicts`): at one
    CPU speed when its speed probes allow, raw when the speed followed the pressure (``summary``, the raw one, is
    computed if not given). When the run has too few points to tell which it was, a setting's fall counts only
    when both readings show one in it (each reading's largest may lie between other points): a fall makes the
    run INVALID, and a tiny run whose CPU ran 1.3x slower while its zero-pressure point was timed (seen in a
    test on a quiet VM) must not be accused on one reading alone."""
    from bubbleup.analysis.speed import adjusted, facts, for_verdicts
    from bubbleup.analysis.summary import summarise

    judged = for_verdicts(run)
    if judged is not run:
        return falls(summarise(judged), set_size=run.set_size)
    raw = falls(summary if summary is not None else summarise(run), set_size=run.set_size)
    known = facts(run)
    if not (raw and known.too_few):
        return raw
    also = {f.setting for f in falls(summarise(adjusted(run, known.reference_ns)), set_size=run.set_size)}
    return [f for f in raw if f.setting in also]
