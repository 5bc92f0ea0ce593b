"""The report's figures, drawn with matplotlib/seaborn on the Agg backend and returned as PNG data URIs.

Every figure is built for a reader who has five seconds: one colour-blind-safe colour *and*
one marker per setting (so it survives greyscale printing), every line named in a legend,
units on both axes, and the cliff drawn where it is rather than left to the eye.
Each function returns ``None`` when its data is absent, so a partial run draws what it has.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from bubbleup.analysis.cliff import BREAK, NON_FUNCTIONAL, Cliff
from bubbleup.analysis.tradeoff import Level
from bubbleup.formatting import format_value, pressure, times
from bubbleup.store.reader import Run

#: seaborn's colour-blind palette minus its pale pink and yellow, which vanish on white.
PALETTE = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#56b4e9", "#949494")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Above this many settings one panel gets unreadable: draw small multiples instead.
MAX_LINES = len(PALETTE)
DPI = 100


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str


def styles(settings: Sequence[str]) -> dict[str, Style]:
    """A stable colour and marker per setting, in the run's settings order."""
    return {s: Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, s in enumerate(settings)}


def to_data_uri(fig: Figure) -> str:
    """Encode a figure as a PNG data URI (the report must not reference any file) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def plain_log_y(ax: plt.Axes) -> None:
    """Log y with ordinary numbers as tick labels (``20``, ``50``), not ``10^1``.

    Call after plotting: within about a decade every minor tick is labelled (else a panel
    spanning 10-40 ms would show a single label); over wider ranges only 2x and 5x ones.
    """
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}"))
    lo, hi = ax.get_ylim()
    keep = "23456789" if hi / max(lo, 1e-12) < 12 else "25"
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _pos: f"{y:g}" if f"{y:g}"[0] in keep else ""))


def wants_log(values: pd.Series | np.ndarray, ratio: float = 6.0) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return bool(len(v) > 1 and v.max() / v.min() > ratio)


def axis_label(run: Run) -> str:
    """The x-axis title of a latency-vs-pressure figure, with units and the fixed other dimension."""
    kinds = run.set_size
    if run.axis == "schedule":  # one point: the whole schedule, its pressure changing within every step
        return "the whole schedule (pressure changing within it)"
    if run.axis == "size_mb":
        counts: np.ndarray | list[float] = run.points["bubble_count"].dropna().unique() if len(run.points) else []
        count = int(counts[0]) if len(counts) == 1 else run.sweep_count
        if not count:
            return "bubble size (MiB)"
        return f"bubble size (MiB), {pressure(count, 'count')}"
    size = run.fixed_size_mb
    if math.isnan(size):
        return "bubbles running"
    if kinds > 1:
        return f"bubble sets running ({kinds} bubbles each, largest {format_value(size, 'size_mb')})"
    return f"bubbles running (each {format_value(size, 'size_mb')})"


def x_axis(ax: plt.Axes, run: Run, values: Iterable[float]) -> None:
    """Sweep values as ticks; a log2 axis when sizes double (64, 128, ... MiB)."""
    vals = sorted(v for v in values if np.isfinite(v))
    if run.axis == "size_mb" and vals and vals[0] > 0 and vals[-1] / vals[0] >= 8:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_formatter(NullFormatter())
    if 0 < len(vals) <= 16:
        ax.set_xticks(vals)
        ax.set_xticklabels(_spaced_labels(vals, [format_value(v, run.axis, unit=False) for v in vals],
                                          ax.get_xscale() == "log"))  # fmt: skip
    ax.set_xlabel(axis_label(run))


def _spaced_labels(vals: Sequence[float], labels: list[str], log: bool, min_gap: float = 0.07) -> list[str]:
    """Blank the labels of ticks crowding their neighbours (7168, 7680, 7936 MiB on a 0-8 GiB axis would print
    over each other); the last tick always keeps its label, the highest pressure being the one read most."""
    pos = np.log2(np.asarray(vals, dtype=float)) if log else np.asarray(vals, dtype=float)
    span = float(pos[-1] - pos[0]) or 1.0
    keep = [False] * len(vals)
    keep[-1] = True
    last = pos[-1]
    for i in range(len(vals) - 2, -1, -1):  # from the top down, so the last label is never the one dropped
        if (last - pos[i]) / span >= min_gap:
            keep[i] = True
            last = pos[i]
    return [label if k else "" for label, k in zip(labels, keep, strict=True)]


def _cliff_label(cliff: Cliff | None, axis: str) -> str:
    if cliff is None:
        return ""
    if cliff.kind == BREAK:
        return f"cliff at {format_value(cliff.at, axis)} ({times(cliff.jump)})"
    if cliff.kind == NON_FUNCTIONAL:
        return f"fails at {format_value(cliff.at, axis)}"
    return "no cliff"


def latency_curve(run: Run, summary: pd.DataFrame, cliffs: Sequence[Cliff], qos: bool = False) -> Figure | None:
    """Median latency (or normalised QoS) vs pressure, one line per setting with its 95% CI band and cliff."""
    if summary.empty or not summary["median_ms"].notna().any():
        return None
    theme()
    settings = [s for s in run.settings if s in set(summary["setting"])]
    style = styles(settings)
    by_setting = {c.setting: c for c in cliffs}
    column = "qos" if qos else "median_ms"
    if qos and not summary["qos"].notna().any():
        return None
    small = len(settings) > MAX_LINES
    ncols = 4 if small else 1
    nrows = math.ceil(len(settings) / ncols) if small else 1
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(13 if small else 10, 3.2 * nrows if small else 5.2),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    flat = list(axes.flat)
    log_y = not qos and wants_log(summary[column], 3)
    for i, setting in enumerate(settings):
        ax = flat[i] if small else flat[0]
        if small:  # the other settings in grey, for context
            for other in settings:
                o = summary[(summary["setting"] == other) & summary[column].notna()].sort_values("value")
                ax.plot(o["value"], o[column], color="#dddddd", lw=0.8, zorder=1)
        _draw_setting(ax, summary, setting, style[setting], by_setting.get(setting), column, 0 if small else i)
        if small:
            ax.set_title(f"{setting}: {_cliff_label(by_setting.get(setting), run.axis)}", fontsize=9)
    for ax in flat[len(settings) if small else 1 :]:
        ax.set_visible(False)
    for ax in flat:
        if qos:
            ax.axhline(1.0, color="#555555", lw=0.8, ls=":")
            top = summary[column].max() if column in summary else 1.0
            ax.set_ylim(0, min(max(1.15, float(top) * 1.08), 3.0))  # speed-ups above 1 stay visible
        else:
            ax.margins(y=0.18 if small else 0.1)  # room for the cliff's label
        if log_y:
            plain_log_y(ax)
        x_axis(ax, run, summary["value"].unique())
        if small and ax not in _bottom_axes(axes, len(settings)):
            ax.set_xlabel("")
        elif small:
            ax.xaxis.set_tick_params(labelbottom=True)  # sharex hides them above an empty panel
    ylabel = (
        "normalised QoS\n(latency with least pressure / latency)"
        if qos
        else f"median latency (ms){', log scale' if log_y else ''}"
    )
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    if not small:
        _legend(flat[0], settings, style, by_setting, run.axis, summary, qos)
    fig.tight_layout()
    return fig


def _bottom_axes(axes: np.ndarray, n_used: int) -> list[plt.Axes]:
    """The lowest visible panel of each column of a grid of which the first ``n_used`` panels are used."""
    nrows, ncols = axes.shape
    out = []
    for col in range(ncols):
        rows = [r for r in range(nrows) if r * ncols + col < n_used]
        if rows:
            out.append(axes[rows[-1], col])
    return out


def _draw_setting(
    ax: plt.Axes, summary: pd.DataFrame, setting: str, st: Style, cliff: Cliff | None, column: str, level: int = 0
) -> None:
    rows = summary[summary["setting"] == setting].sort_values("value")
    ok = rows[rows[column].notna()]
    ax.plot(ok["value"], ok[column], color=st.colour, marker=st.marker, lw=2, ms=6, zorder=3)
    if column == "median_ms" and ok["ci_low_ms"].notna().any():
        ax.fill_between(ok["value"], ok["ci_low_ms"], ok["ci_high_ms"], color=st.colour, alpha=0.2, lw=0, zorder=2)
    elif column == "qos" and ok["ci_low_ms"].notna().any():
        base = ok["median_ms"] * ok["qos"]  # the baseline median
        ax.fill_between(ok["value"], base / ok["ci_high_ms"], base / ok["ci_low_ms"], color=st.colour, alpha=0.2, lw=0)
    bad = rows[rows["status"] != "ok"]
    if len(bad):  # failed points have no latency: they sit on the bottom edge, one row per setting
        trans = ax.get_xaxis_transform()
        ax.scatter(
            bad["value"],
            [0.04 + 0.05 * level] * len(bad),
            transform=trans,
            marker="X",
            s=110,
            color=st.colour,
            edgecolor="black",
            linewidth=0.8,
            zorder=5,
            clip_on=False,
        )
    if cliff is not None and cliff.kind == BREAK and cliff.at is not None:  # a break always has its point
        hit = ok[ok["value"] == cliff.at]
        if len(hit):
            x, y = float(cliff.at), float(hit[column].iloc[0])
            ax.scatter([x], [y], s=420, facecolor="none", edgecolor=st.colour, linewidth=2.5, zorder=6)
            ax.annotate(
                f"cliff {times(cliff.jump)}",
                (x, y),
                xytext=(-12, 16),
                textcoords="offset points",
                ha="right",
                color=st.colour,
                fontsize=9,
                fontweight="bold",
                zorder=7,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
            )


def _legend(
    ax: plt.Axes,
    settings: Sequence[str],
    style: dict[str, Style],
    by_setting: dict[str, Cliff],
    axis: str,
    summary: pd.DataFrame,
    qos: bool,
) -> None:
    handles = [
        Line2D(
            [],
            [],
            color=style[s].colour,
            marker=style[s].marker,
            lw=2,
            label=f"{s}: {_cliff_label(by_setting.get(s), axis)}",
        )
        for s in settings
    ]
    handles.append(Line2D([], [], color="#888888", lw=8, alpha=0.3, label="95% CI of the median"))
    if any(c.kind == BREAK for c in by_setting.values()):
        handles.append(Line2D([], [], ls="", marker="o", ms=14, mfc="none", mec="#444444", mew=2, label="cliff"))
    if (summary["status"] != "ok").any():
        handles.append(Line2D([], [], ls="", marker="X", ms=10, color="#888888", mec="black", label="failed/timeout"))
    ax.legend(handles=handles, title="setting", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def distributions(run: Run, timed: pd.DataFrame) -> Figure | None:
    """Per-point latency distributions (box plots): what the medians hide, outliers and spread."""
    if timed.empty:
        return None
    theme()
    settings = [s for s in run.settings if s in set(timed["setting"])]
    style = styles(settings)
    values = sorted(timed["value"].unique())

    def tick(v: float) -> str:  # a schedule's one value (0) is no pressure of its own
        return "whole schedule" if run.axis == "schedule" else format_value(v, run.axis, unit=False)

    labels = [tick(v) for v in values]
    log_y = wants_log(timed["latency_ms"], 4)
    ylabel = f"latency per inference (ms){', log scale' if log_y else ''}"
    if len(settings) <= 6:
        data = timed.assign(pressure=timed["value"].map(tick))
        width = min(16.0, max(8.0, 0.55 * len(values) * len(settings) + 3))
        fig, ax = plt.subplots(figsize=(width, 5))
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11 a deprecated argument
            warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
            sns.boxplot(
                data=data,
                x="pressure",
                y="latency_ms",
                hue="setting",
                order=labels,
                hue_order=settings,
                palette={s: style[s].colour for s in settings},
                fliersize=2,
                linewidth=1,
                ax=ax,
                log_scale=log_y,
            )
        ax.legend(title="setting", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        if log_y:
            plain_log_y(ax)
        ax.set_xlabel(axis_label(run))
        ax.set_ylabel(ylabel)
        fig.tight_layout()
        return fig
    # many settings: one small panel each (plain matplotlib: seaborn's faceting is slow here)
    ncols = 4
    nrows = math.ceil(len(settings) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, 2.8 * nrows), squeeze=False, sharex=True, sharey=True)
    for ax, setting in zip(axes.flat, settings, strict=False):
        part = timed[timed["setting"] == setting]
        groups = [part.loc[part["value"] == v, "latency_ms"].to_numpy(float) for v in values]
        ax.boxplot(
            groups,
            positions=range(len(values)),
            widths=0.6,
            patch_artist=True,
            showfliers=True,
            boxprops={"facecolor": style[setting].colour, "alpha": 0.8},
            medianprops={"color": "black"},
            flierprops={"markersize": 2},
        )
        ax.set_title(setting, fontsize=9)
    for ax in list(axes.flat)[len(settings) :]:
        ax.set_visible(False)
    for ax in axes.flat:
        if log_y:
            ax.set_yscale("log")
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(labels)
    if log_y:
        plain_log_y(axes.flat[0])  # shared y: one call formats every panel
    for ax in _bottom_axes(axes, len(settings)):
        ax.set_xlabel(axis_label(run))
        ax.xaxis.set_tick_params(labelbottom=True)  # sharex hides them above an empty panel
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel if ax is axes[nrows // 2, 0] else "")
    fig.tight_layout()
    return fig


#: More points than this in a time trace add ink, not information: timed samples are thinned.


def accuracy_latency(run: Run, levels: Sequence[Level], budget_ms: float | None = None) -> Figure | None:
    """Top-1 against latency, one colour per pressure level, each level's Pareto frontier drawn as a step line
    (the settings worth running there); the SLO's budget as a vertical line when one is given."""
    if not levels:
        return None
    theme()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(levels)))
    lat = [o.latency_ms for lv in levels for o in lv.options]
    for colour, lv in zip(colours, levels, strict=True):
        label = format_value(lv.value, run.axis)
        xs = [o.latency_ms for o in lv.options]
        ys = [o.accuracy.top1 for o in lv.options]
        err = [[o.accuracy.top1 - o.accuracy.low for o in lv.options],
               [o.accuracy.high - o.accuracy.top1 for o in lv.options]]  # fmt: skip
        ax.errorbar(xs, ys, yerr=err, ls="", marker="o", ms=5, color=colour, alpha=0.55, elinewidth=0.8, capsize=2)
        f = lv.frontier
        ax.step([o.latency_ms for o in f], [o.accuracy.top1 for o in f], where="post", color=colour, lw=2,
                label=f"{label}{' bubbles' if run.axis == 'count' else ''}")  # fmt: skip
    if budget_ms is not None:
        ax.axvline(budget_ms, color="#b22222", ls="--", lw=1.2, label=f"budget {budget_ms:.2f} ms (SLO / margin)")
    if wants_log(pd.Series(lat), 6):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "2468" else ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel("latency per inference (ms)")
    ax.set_ylabel("top-1 accuracy (95% Wilson interval)")
    ax.legend(title="pressure: frontier", loc="lower right", frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
