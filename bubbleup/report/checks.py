"""The HTML page of ``bubbleup check-prediction``: each setting's sensitivity curve with every co-runner's
score marked, the QoS predicted there and the QoS measured when they really co-ran (numbers from
:mod:`bubbleup.colocation`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

import bubbleup
from bubbleup.analysis.sensitivity import SensitivityCurve
from bubbleup.report.figures import theme
from bubbleup.report.html import FigureBlock, draw_figures, environment

if TYPE_CHECKING:
    from bubbleup.colocation.workflow import Check

FILE = "check.html"


def curves_figure(curves: Sequence[SensitivityCurve], checks: Sequence[Check]) -> Figure | None:
    """One panel per setting: the curve (median, 95% band), and per co-runner its score (dotted line),
    the prediction (hollow) and the measurement (filled, with its interval)."""
    if not curves:
        return None
    theme()
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False, sharey=True)
    corunners = list(dict.fromkeys(c.corunner for c in checks))
    colours = plt.get_cmap("tab10")
    for ax, curve in zip(axes[0], curves, strict=True):
        x = np.maximum(curve.sizes, 0.5)  # 0 MiB drawn at 0.5 on the log axis (labelled 0)
        ax.plot(x, curve.qos, "-o", color="0.2", lw=1.5, ms=3, label="sensitivity curve")
        ax.fill_between(x, [p.qos_low for p in curve.points], [p.qos_high for p in curve.points], color="0.6",
                        alpha=0.3, lw=0)  # fmt: skip
        for c in checks:
            if c.setting != curve.setting:
                continue
            colour = colours(corunners.index(c.corunner) % 10)
            sx = max(float(c.score_mb), 0.5)
            ax.axvline(sx, color=colour, ls=":", lw=1)
            ax.plot([sx], [c.predicted], "o", mfc="none", mec=colour, ms=8)
            m, lo, hi = c.measured, c.measured_low, c.measured_high
            ax.errorbar([sx], [m], yerr=[[m - lo], [hi - m]], fmt="s", color=colour, ms=5, capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [f"{s:g}" for s in curve.sizes], fontsize=7)
        ax.set_title(curve.setting, fontsize=10)
        ax.set_xlabel("Bubble-Up bubble, MiB")
    axes[0][0].set_ylabel("normalised QoS (alone / beside)")
    handles = [plt.Line2D([], [], color="0.2", marker="o", ms=3, label="sensitivity curve"),
               plt.Line2D([], [], color="0.4", marker="o", mfc="none", ls="", label="predicted at the score"),
               plt.Line2D([], [], color="0.4", marker="s", ls="", label="measured co-run")]  # fmt: skip
    handles += [plt.Line2D([], [], color=colours(i % 10), ls=":", label=name[:40]) for i, name in enumerate(corunners)]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.12 + 0.04 * (len(handles) // 4), 1, 1))
    return fig


def write(out: Path, curves: Sequence[SensitivityCurve], checks: Sequence[Check], summary: Sequence[str],
          run_dir: Path) -> Path:  # fmt: skip
    figures: list[FigureBlock] = draw_figures([(
        "checks", "Predicted and measured QoS on each sensitivity curve",
        "Grey: the workload's sensitivity curve (median; band: 95% interval). Dotted: each co-runner's bubble "
        "score. Hollow circle: the QoS predicted there (co-runners sharing the workload's CPUs: the curve's QoS "
        "times the CPU curve's at the co-runner's load: its cores, or one task at most where the kernel groups by "
        "session; so it lies below the curve); filled square: the QoS "
        "measured when the two really co-ran (bars: its 95% interval, repeats as replicates).",
        lambda: curves_figure(curves, checks),
    )])  # fmt: skip
    html = environment().get_template("checks.html.j2").render(
        title=f"bubbleup check-prediction: {run_dir.name}", run_dir=str(run_dir), checks=list(checks),
        summary=list(summary), figures=figures, version=bubbleup.__version__,
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip
    path = out / FILE
    path.write_text(html, encoding="utf-8")
    return path
