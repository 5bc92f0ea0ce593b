"""The HTML comparison of two runs (the numbers come from :mod:`bubbleup.analysis.compare`)."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import IO

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

import bubbleup
from bubbleup.analysis.compare import MIN_EFFECT, Comparison, compare_runs, format_text, table_rows
from bubbleup.errors import UserError
from bubbleup.formatting import fmt_ms, format_value, times
from bubbleup.inputs import output_path
from bubbleup.report.figures import plain_log_y, styles, theme, wants_log, x_axis
from bubbleup.report.html import FigureBlock, draw_figures, environment
from bubbleup.store.reader import Run, load_run


def _figures(cmp: Comparison) -> list[FigureBlock]:
    return draw_figures(
        [
            (
                "overlay",
                "Median latency, A vs B",
                "Dashed lines and hollow markers: run A; solid lines and filled markers: run B; "
                "bands: 95% CI of each median.",
                lambda: comparison_overlay(cmp.run_a, cmp.run_b, cmp.summary_a, cmp.summary_b),
            ),
            (
                "ratio",
                "B / A latency per point (interquartile means)" + (", at one CPU speed" if cmp.one_speed else ""),
                "Above 1: B is slower. Bars: 95% hierarchical-bootstrap CI of the ratio. Filled: changed points."
                + (f" Every inference scaled by the CPU speed probe taken before it{cmp.power}, to A's median speed."
                   if cmp.one_speed else ""),
                lambda: comparison_ratios(cmp.run_a, cmp.run_b, cmp.table),
            ),
        ]
    )


def render(cmp: Comparison) -> str:
    import datetime as _dt

    rows = []
    for r in table_rows(cmp.table):
        rows.append(
            {
                "setting": r.setting,
                "value": format_value(r.value, cmp.run_a.axis),
                "a": fmt_ms(r.median_a_ms),
                "b": fmt_ms(r.median_b_ms),
                "n_a": r.n_a,
                "n_b": r.n_b,
                "cpu": times(r.speed_ratio) if not math.isnan(r.speed_ratio) else "-",
                "ratio": times(r.ratio) if not math.isnan(r.ratio) else "-",
                "ci": f"{times(r.ratio_low)}-{times(r.ratio_high)}" if not math.isnan(r.ratio_low) else "-",
                "repeats": f"{r.n_repeats_a}/{r.n_repeats_b}",
                "significant": bool(r.significant),
                "verdict": r.verdict,
            }
        )
    ctx = {
        "title": f"bubbleup comparison: {cmp.run_a.name} vs {cmp.run_b.name}",
        "a": cmp.run_a,
        "b": cmp.run_b,
        "warnings": list(cmp.warnings),
        "rows": rows,
        "only_a": list(cmp.only_a),
        "only_b": list(cmp.only_b),
        "env_diff": list(cmp.env_diff),
        "env_readings": list(cmp.env_readings),
        "figures": _figures(cmp),
        "min_effect": f"{cmp.min_effect:.0%}",
        "one_speed": cmp.one_speed,
        "power": cmp.power,
        "agreement": list(cmp.agreement),
        "agree_count": cmp.agree_count,
        "flagged": cmp.flagged,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": bubbleup.__version__,
    }
    return environment().get_template("compare.html.j2").render(**ctx)


def default_output(run_a: Path, run_b: Path) -> Path:
    """``RUN_B/compare-<A's directory name>.html``: the comparison lives with the newer run."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(run_a).resolve().name) or "a"
    return Path(run_b) / f"compare-{slug}.html"


def write_comparison(run_a: Path, run_b: Path, out: Path | None = None, stream: IO[str] | None = sys.stdout,
                     min_effect: float = MIN_EFFECT) -> Path:  # fmt: skip
    """Write the HTML comparison of two run directories, print the text table to ``stream``, return the HTML path."""
    return write_compared(run_a, run_b, out, stream, min_effect)[0]


def write_compared(run_a: Path, run_b: Path, out: Path | None = None, stream: IO[str] | None = sys.stdout,
                   min_effect: float = MIN_EFFECT) -> tuple[Path, Comparison]:  # fmt: skip
    """:func:`write_comparison`, also returning the comparison (for a gate to judge)."""
    out = output_path(out if out is not None else default_output(Path(run_a), Path(run_b)), "HTML file")
    cmp = compare_runs(load_run(run_a), load_run(run_b), min_effect)
    try:
        out.write_text(render(cmp), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{out}: cannot write the comparison: {exc.strerror or exc}") from None
    if stream is not None:
        print(format_text(cmp), file=stream)
    return out, cmp


# -- figures ---------------------------------------------------------------------------------------


def comparison_overlay(run_a: Run, run_b: Run, sa: pd.DataFrame, sb: pd.DataFrame) -> Figure | None:
    """Both runs' median curves on one plot: A dashed with hollow markers, B solid."""
    if not (sa["median_ms"].notna().any() or sb["median_ms"].notna().any()):
        return None
    theme()
    settings = list(dict.fromkeys(run_a.settings + run_b.settings))
    style = styles(settings)
    fig, ax = plt.subplots(figsize=(10, 5.2))
    for summary, dashed in ((sa, True), (sb, False)):
        for s in settings:
            rows = summary[(summary["setting"] == s) & summary["median_ms"].notna()].sort_values("value")
            if rows.empty:
                continue
            st = style[s]
            ax.plot(
                rows["value"],
                rows["median_ms"],
                color=st.colour,
                marker=st.marker,
                ls="--" if dashed else "-",
                mfc="white" if dashed else st.colour,
                lw=2,
                ms=6,
            )
            ax.fill_between(rows["value"], rows["ci_low_ms"], rows["ci_high_ms"], color=st.colour, alpha=0.15, lw=0)
    if wants_log(pd.concat([sa["median_ms"], sb["median_ms"]])):
        plain_log_y(ax)
    x_axis(ax, run_b, sorted(set(sa["value"]) | set(sb["value"])))
    ax.set_ylabel("median latency (ms)")
    handles = [Line2D([], [], color=style[s].colour, marker=style[s].marker, lw=2, label=s) for s in settings]
    handles += [
        Line2D([], [], color="#555555", ls="--", marker="o", mfc="white", label=f"A: {run_a.name}"),
        Line2D([], [], color="#555555", ls="-", marker="o", label=f"B: {run_b.name}"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="setting / run")
    fig.tight_layout()
    return fig


def comparison_ratios(run_a: Run, run_b: Run, table: pd.DataFrame) -> Figure | None:
    """B/A ratio of interquartile means per point with its CI, on a log axis; significant differences filled."""
    t = table.dropna(subset=["ratio"])
    if t.empty:
        return None
    theme()
    settings = list(dict.fromkeys(t["setting"]))
    style = styles(list(dict.fromkeys(run_a.settings + run_b.settings)))
    values = sorted(t["value"].unique())
    step = (min(np.diff(values)) if len(values) > 1 else 1.0) * 0.5 / max(1, len(settings))
    fig, ax = plt.subplots(figsize=(10, 4.6))
    for i, s in enumerate(settings):
        rows = t[t["setting"] == s].sort_values("value")
        x = rows["value"] + (i - (len(settings) - 1) / 2) * step if run_b.axis == "count" else rows["value"]
        err = [rows["ratio"] - rows["ratio_low"], rows["ratio_high"] - rows["ratio"]]
        st = style[s]
        ax.errorbar(x, rows["ratio"], yerr=err, fmt="none", ecolor=st.colour, elinewidth=1.5, capsize=3)
        sig = rows["significant"].to_numpy(bool)
        ax.scatter(x[sig], rows["ratio"][sig], color=st.colour, marker=st.marker, s=50, zorder=3, label=s)
        ax.scatter(
            x[~sig],
            rows["ratio"][~sig],
            facecolor="white",
            edgecolor=st.colour,
            marker=st.marker,
            s=50,
            zorder=3,
            label=None if sig.any() else s,
        )
    ax.axhline(1.0, color="#333333", lw=1)
    ax.set_yscale("log", base=2)  # 0.5x and 2x sit at the same distance from 1
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _pos: f"{y:.2g}"))
    x_axis(ax, run_b, values)
    ax.set_ylabel("latency B / A, IQM (ratio, log scale)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="setting")
    fig.tight_layout()
    return fig
