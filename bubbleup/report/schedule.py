"""The report's schedule section: each configuration through the same changing contention, side by side
(:mod:`bubbleup.analysis.schedule`), and their latency and setting over time with the pressure shaded."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bubbleup.analysis.schedule import TARGET_SHARE, ScheduleResult, frames
from bubbleup.formatting import fmt_ms
from bubbleup.report.figures import PALETTE, plain_log_y, theme, wants_log
from bubbleup.store.reader import Run

#: Panels drawn at most (one per configuration); more would be unreadable at report width.
MAX_PANELS = 8


def schedule_context(result: ScheduleResult | None) -> dict[str, Any] | None:
    """The template's table: one row per configuration, and the targets in words."""
    if result is None:
        return None

    def pct(x: float) -> str:
        return f"{x:.1%}" if not math.isnan(x) else "-"

    rows = [{
        "series": s.series, "frames": s.frames, "within": pct(s.within),
        "within_ci": f"{pct(s.within_low)}-{pct(s.within_high)}" if not math.isnan(s.within_low) else "",
        "meets": s.meets or not result.has_slo, "accuracy": pct(s.accuracy), "median": fmt_ms(s.median_ms),
        "p95": fmt_ms(s.p95_ms),
        "switches": s.switches if s.adaptive else "", "adaptive": s.adaptive,
        "switch_cost": (f"{fmt_ms(s.switch_ms)} vs {fmt_ms(s.steady_ms)}" if s.adaptive and s.switches else ""),
        "phases": ", ".join(pct(x) for x in s.phase_within), "transition": s.transition_frames,
        "used": ", ".join(s.settings_used[:4]) + (" ..." if len(s.settings_used) > 4 else ""),
    } for s in result.series]  # fmt: skip
    phases = " then ".join(f"{b} for {sec:g} s" for b, sec in result.phases)
    return {"slo": f"{result.slo_ms:g}" if result.has_slo else "", "target": f"{TARGET_SHARE:.0%}", "rows": rows,
            "phases": phases, "targets": result.targets()}  # fmt: skip


def schedule_timeline(run: Run, result: ScheduleResult | None) -> Figure | None:
    """Latency of every frame on the schedule's clock (the first repeat), one panel per configuration, each dot
    coloured by the setting that ran; the bubbles in force shaded behind, the SLO dashed."""
    if result is None:
        return None
    f = frames(run)
    f = f[f["repeat"] == f["repeat"].min()]
    series = [s.series for s in result.series][:MAX_PANELS]
    theme()
    fig, axes = plt.subplots(len(series), 1, figsize=(11, 1.9 * len(series) + 0.8), sharex=True, squeeze=False)
    ran_all = list(dict.fromkeys(f["ran"]))
    colour = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(ran_all)}
    log = wants_log(f["latency_ms"], 6)
    for ax, name in zip(axes[:, 0], series, strict=True):
        g = f[f["setting"].astype(str) == name].sort_values("t_sched_s")
        shade = ax.twinx()
        shade.fill_between(g["t_sched_s"], g["live_bubbles"].fillna(0), step="post", color="#999999", alpha=0.18,
                           lw=0)  # fmt: skip
        shade.set_ylim(0, max(1.0, float(f["live_bubbles"].max())) * 1.15)
        shade.set_ylabel("bubbles", fontsize=8, color="#777777")
        shade.tick_params(labelsize=7, colors="#777777")
        shade.grid(False)
        ax.set_zorder(shade.get_zorder() + 1)
        ax.patch.set_visible(False)
        for r, part in g.groupby("ran", sort=False):
            ax.scatter(part["t_sched_s"], part["latency_ms"], s=4, color=colour[str(r)], label=str(r), lw=0)
        res = next(s for s in result.series if s.series == name)
        switched = g[g["switched"]]
        if res.adaptive and len(switched):
            ax.scatter(switched["t_sched_s"], switched["latency_ms"], marker="|", s=40, color="#333333",
                       label="switch", lw=0.8)  # fmt: skip
        if not math.isnan(result.slo_ms):
            ax.axhline(result.slo_ms, color="#b22222", ls="--", lw=1.0)
        said = (f"{res.within:.1%} of frames within {result.slo_ms:g} ms" if result.has_slo
                else f"median {fmt_ms(res.median_ms)} ms (no SLO given)")  # fmt: skip
        ax.set_title(f"{name}: {said}", fontsize=9, loc="left")
        ax.set_ylabel("ms")
        if log:
            ax.set_yscale("log")
            plain_log_y(ax)
        if g["ran"].nunique() > 1:
            ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=min(6, g["ran"].nunique() + 1),
                      markerscale=3)  # fmt: skip
    axes[-1, 0].set_xlabel("seconds since the schedule began (first repeat)")
    starts = np.cumsum([0.0] + [sec for _, sec in result.phases])[:-1]
    for ax in axes[:, 0]:
        for t in starts[1:]:
            ax.axvline(t, color="#777777", ls=":", lw=0.8)
    fig.tight_layout()
    return fig
