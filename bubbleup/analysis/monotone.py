"""Is the pressure dial monotone? Bubble-Up's first rule for a bubble is that more of it never helps.

A setting's curve *falls beyond noise* when some point's median CI lies wholly below the CI of a
point at lower pressure: more bubbles made the workload measurably faster. That is not contention
going away; it is the scheduler placing the workload differently (README "Where bubbles sit"), and
a cliff read off such a curve is not to be trusted. Works on a :func:`summarise` frame.

A fall must also be large enough to matter: with hundreds of samples per point the CIs are narrow,
and a fall of 2% beyond them is real but says nothing about placement, so falls under
``MIN_FALL`` (5%) are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bubbleup.formatting import format_value, ms, times
from bubbleup.store.records import STATUS_OK

#: The smallest fall reported: the slower median over the faster one.
MIN_FALL = 1.05


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

    @property
    def ratio(self) -> float:
        return self.high_ms / self.low_ms

    def sentence(self) -> str:
        """``HH is not monotone: 42.8 ms at 5 bubbles but 17.6 ms at 6 (2.43x faster, beyond both CIs)``."""
        unit = "" if self.axis == "size_mb" else " bubble" if self.high_value == 1 else " bubbles"
        return (
            f"{self.setting} is not monotone: {ms(self.high_ms)} at {format_value(self.high_value, self.axis)}{unit} "
            f"but {ms(self.low_ms)} at {format_value(self.low_value, self.axis)} "
            f"({times(self.ratio)} faster with more pressure, beyond both 95% CIs)"
        )


def falls(summary: pd.DataFrame, min_ratio: float = MIN_FALL) -> list[Fall]:
    """Per setting (summary order), its largest fall beyond both CIs and of at least ``min_ratio``;
    settings that never fall that far are left out."""
    out: list[Fall] = []
    if summary.empty:
        return out
    for setting, grp in summary.groupby("setting", sort=False):
        rows = grp[grp["status"] == STATUS_OK].sort_values("value")
        best: Fall | None = None
        pts = list(rows.itertuples(index=False))
        for i, hi in enumerate(pts):
            for lo in pts[i + 1 :]:
                if any(math.isnan(float(x)) for x in (hi.ci_low_ms, lo.ci_high_ms, hi.median_ms, lo.median_ms)):
                    continue
                if float(lo.ci_high_ms) < float(hi.ci_low_ms):
                    fall = Fall(str(setting), str(hi.axis), float(hi.value), float(lo.value), float(hi.median_ms),
                                float(lo.median_ms), float(hi.ci_low_ms), float(lo.ci_high_ms))  # fmt: skip
                    if fall.ratio >= min_ratio and (best is None or fall.ratio > best.ratio):
                        best = fall
        if best is not None:
            out.append(best)
    return out
