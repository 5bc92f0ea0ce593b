"""Figures of what happened over time and to memory: the memory trace, memory per configuration,
and the machine telemetry. Style and shared helpers come from :mod:`bubbleup.report.figures`."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bubbleup.formatting import format_value
from bubbleup.report.figures import PALETTE, Style, plain_log_y, styles, theme, wants_log
from bubbleup.store.reader import Run

MAX_TRACE_POINTS = 20_000


def _thin_out(trace: pd.DataFrame) -> pd.DataFrame:
    """Every warm-up, first use and setting change kept; timed samples decimated evenly beyond MAX_TRACE_POINTS."""
    if len(trace) <= MAX_TRACE_POINTS:
        return trace
    keep = (trace["phase"] != "timed") | (trace["first_use"] == 1)
    keep |= (trace["setting"] != trace["setting"].shift()) | (trace["worker_pid"] != trace["worker_pid"].shift())
    step = math.ceil(len(trace) / MAX_TRACE_POINTS)
    keep |= (np.arange(len(trace)) % step) == 0
    return trace[keep].reset_index(drop=True)


def _change_points(trace: pd.DataFrame) -> pd.DataFrame:
    """Rows where the setting (or the worker process) changes from the previous sample."""
    prev_setting = trace["setting"].shift()
    prev_pid = trace["worker_pid"].shift()
    changed = (trace["setting"] != prev_setting) | (trace["worker_pid"] != prev_pid)
    return trace[changed]


def memory_trace(run: Run) -> Figure | None:
    """Worker RSS and latency over the run, every setting change marked (the TX2 study's Figure 3.2)."""
    s = run.samples
    if s.empty or not s["rss_mb"].notna().any() or not s["t_s"].notna().any():
        return None
    theme()
    trace = _thin_out(s.sort_values("t_s").reset_index(drop=True))
    settings = [x for x in run.settings if x in set(trace["setting"])]
    style = styles(settings)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.2), sharex=True, height_ratios=(3, 2))
    for _pid, seg in trace.groupby("worker_pid", sort=False):  # one line per worker: a restart breaks the trace
        top.plot(seg["t_s"], seg["rss_mb"], color="#444444", lw=0.8, zorder=2)
    for setting in settings:
        part = trace[trace["setting"] == setting]
        top.scatter(
            part["t_s"],
            part["rss_mb"],
            s=6,
            color=style[setting].colour,
            marker=style[setting].marker,
            label=setting,
            zorder=3,
        )
        bottom.scatter(
            part["t_s"], part["latency_ms"], s=6, color=style[setting].colour, marker=style[setting].marker, zorder=3
        )
    changes = _change_points(trace)
    if len(changes) <= 80:
        for ax in (top, bottom):
            for t in changes["t_s"].iloc[1:]:
                ax.axvline(t, color="#999999", lw=0.7, ls="--", zorder=1)
    first = trace[trace["first_use"] == 1]
    if len(first):
        top.scatter(
            first["t_s"],
            first["rss_mb"],
            s=70,
            marker="v",
            facecolor="none",
            edgecolor="black",
            linewidth=1.2,
            zorder=4,
            label="first use of a setting",
        )
        if len(first) <= 12:
            for row in first.itertuples():
                top.annotate(
                    str(row.setting),
                    (row.t_s, row.rss_mb),
                    xytext=(3, 8),
                    textcoords="offset points",
                    fontsize=8,
                    color=style.get(row.setting, Style("#000", "o")).colour,
                )
    _shade_points(run, top, trace)
    _shade_points(run, bottom, trace, labels=False)
    if wants_log(trace["latency_ms"]):
        plain_log_y(bottom)
    _min_span(top, trace["rss_mb"], 0.1)
    top.set_ylabel("worker RSS (MiB)")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("time since the run started (s); dashed lines: setting changes")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="setting", markerscale=2)
    fig.tight_layout()
    return fig


def _min_span(ax: plt.Axes, values: pd.Series, fraction: float) -> None:
    """Show at least ``fraction`` of the largest value on y, so 0.02 MiB of jitter does not fill the panel."""
    lo, hi = float(values.min()), float(values.max())
    span = fraction * abs(hi)
    if hi - lo < span:
        mid = (hi + lo) / 2
        ax.set_ylim(mid - span / 2, mid + span / 2)


def _shade_points(run: Run, ax: plt.Axes, samples: pd.DataFrame, labels: bool = True) -> None:
    """Shade each sweep point's time span and name its pressure: time traces then read against the sweep."""
    spans = samples.groupby(["repeat", "value"])["t_s"].agg(["min", "max"]).sort_values("min")
    if not 1 < len(spans) <= 60:
        return
    trans = ax.get_xaxis_transform()
    for i, ((_rep, value), span) in enumerate(spans.iterrows()):
        if i % 2 == 0:
            ax.axvspan(span["min"], span["max"], color="#f0f0f0", zorder=0)
        if labels:
            ax.text(
                (span["min"] + span["max"]) / 2,
                1.01,
                format_value(value, run.axis, unit=False),
                transform=trans,
                ha="center",
                va="bottom",
                fontsize=7,
                color="#555555",
            )


def memory_bars(run: Run) -> Figure | None:
    """Peak worker RSS per setting (the TX2 study's Figure 3.1, ApproxNet vs MCDNN, made generic).

    In a run of several workloads the bars are coloured by workload, so the comparison the
    study drew (one model that switches vs several models) reads at a glance.
    """
    s = run.samples
    if s.empty or not s["rss_mb"].notna().any():
        return None
    theme()
    settings = [x for x in run.settings if x in set(s["setting"])]
    peak = s.groupby("setting")["rss_mb"].max().reindex(settings)
    if len(run.workloads) > 1:
        owner = s.drop_duplicates("setting").set_index("setting")["workload"].astype(str)
        colour_of = {w: PALETTE[i % len(PALETTE)] for i, w in enumerate(run.workloads)}
        colours = [colour_of.get(owner.get(x, ""), PALETTE[-1]) for x in settings]
    else:
        style = styles(settings)
        colours = [style[x].colour for x in settings]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(settings) + 3), 4.2))
    bars = ax.bar(range(len(settings)), peak.to_numpy(), color=colours)
    ax.bar_label(bars, labels=[f"{v:.0f}" for v in peak.to_numpy()], padding=2, fontsize=9)
    ax.set_xticks(range(len(settings)))
    tilt = len(settings) > 6 or max(len(x) for x in settings) > 12
    ax.set_xticklabels(settings, rotation=30 if tilt else 0, ha="right" if tilt else "center")
    if len(run.workloads) > 1:
        handles = [Patch(color=colour_of[w], label=w) for w in run.workloads]
        ax.legend(handles=handles, title="workload", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlabel("setting (in the order the worker ran them)")
    ax.set_ylabel("peak worker RSS (MiB)")
    ax.margins(y=0.12)
    ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return fig


_UNITS = (
    ("_percent", "%"),
    ("_pct", "%"),
    ("_mb", "MiB"),
    ("_mib", "MiB"),
    ("_kb", "KiB"),
    ("_bytes", "B"),
    ("_ms", "ms"),
    ("_per_s", "/s"),  # before "_s": a rate, not a duration
    ("_s", "s"),
    ("_hz", "Hz"),
    ("_mhz", "MHz"),
    ("_c", "°C"),
    ("avg10", "%"),
    ("avg60", "%"),
    ("avg300", "%"),
)


def _unit(column: str) -> str:
    for suffix, unit in _UNITS:
        if column.lower().endswith(suffix):
            return f" ({unit})"
    return ""


#: Telemetry columns that say when or where a row was taken, not what was measured.
TELEMETRY_KEYS = frozenset({"t_s", "repeat", "value", "step", "bubble_count", "bubble_size_mb"})


def telemetry(run: Run) -> Figure | None:
    """Every numeric telemetry column over time, one small panel each, sweep points shaded (all of them: a cap
    at 12 once left out the CPU-accounting columns validity judges the run by)."""
    tel = run.telemetry
    if tel is None or tel.empty:
        return None
    cols = [
        c
        for c in tel.columns
        if c not in TELEMETRY_KEYS and pd.api.types.is_numeric_dtype(tel[c]) and tel[c].notna().any()
    ]
    if not cols:
        return None
    theme()
    fig, axes = plt.subplots(len(cols), 1, figsize=(12, 1.7 * len(cols) + 0.6), sharex=True, squeeze=False)
    for i, (ax, col) in enumerate(zip(axes[:, 0], cols, strict=True)):
        ax.plot(tel["t_s"], tel[col], color=PALETTE[0], lw=1)
        ax.set_ylabel(f"{col}{_unit(col)}", rotation=0, ha="right", va="center", fontsize=9)
        if not run.samples.empty:
            _shade_points(run, ax, run.samples, labels=i == 0)
    axes[-1, 0].set_xlabel("time since the run started (s); shaded bands and numbers: sweep points")
    fig.tight_layout()
    return fig


# -- comparison of two runs ----------------------------------------------------------------------


def _kinds(run: Run) -> dict[str, str]:
    """Each workload label's kind, from the scenario as run."""
    specs = run.effective.get("workloads") or [run.effective.get("workload") or {}]
    return {str(s.get("label") or s.get("kind")): str(s.get("kind")) for s in specs if s}


def _floors(run: Run) -> dict[str, float]:
    """Each workload's framework floor (RSS with its runtime warm and no model), where its metadata has one."""
    meta = run.manifest.workload_metadata or {}
    out = {}
    for w in run.workloads:
        floor = (meta.get(w) or {}).get("framework_rss_mb")
        if isinstance(floor, int | float) and not math.isnan(float(floor)):
            out[w] = float(floor)
    return out


def memory_by_configuration(run: Run) -> Figure | None:
    """The TX2 study's Figure 3.1 as it drew it: one bar per configuration (workload), coloured by kind
    (ApproxNet vs MCDNN), its peak RSS as *growth over the framework's own floor*, so differences of a few
    MiB show instead of bars of ~600 MiB that all look alike; the whole-process peak is written beside."""
    s = run.samples
    floors = _floors(run)
    if s.empty or len(run.workloads) < 2 or set(floors) != set(run.workloads):
        return None
    theme()
    kinds = _kinds(run)
    kind_names = list(dict.fromkeys(kinds.get(w, "?") for w in run.workloads))
    colour_of = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(kind_names)}
    peak = s.groupby("workload")["rss_mb"].max().reindex(run.workloads)
    growth = np.array([peak[w] - floors[w] for w in run.workloads])
    fig, ax = plt.subplots(figsize=(max(7.0, 0.95 * len(run.workloads) + 3), 4.6))
    bars = ax.bar(range(len(growth)), growth, color=[colour_of[kinds.get(w, "?")] for w in run.workloads])
    ax.bar_label(bars, labels=[f"+{g:.1f}\n({p:.0f})" for g, p in zip(growth, peak.to_numpy(), strict=True)],
                 padding=2, fontsize=8)  # fmt: skip
    ax.set_xticks(range(len(growth)))
    ax.set_xticklabels(run.workloads, rotation=30, ha="right")
    handles = [Patch(color=colour_of[k], label=k) for k in kind_names]
    ax.legend(handles=handles, title="kind", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    floor_text = ", ".join(sorted({f"{f:.0f}" for f in floors.values()}))
    ax.set_ylabel(f"peak RSS over the framework floor (MiB)\nfloor {floor_text} MiB")
    ax.set_xlabel("configuration (whole-process peak in brackets)")
    ax.margins(y=0.2)
    ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return fig


def switching_configuration(run: Run) -> str | None:
    """The configuration Figure 3.2 follows: one named "Mixed" if the run has it (the study's ApproxNet
    Mixed), else the first that runs more than one setting; None for a run of one workload (a sweep, whose
    worker memory over time is the memory trace)."""
    s = run.samples
    if s.empty or len(run.workloads) < 2:
        return None
    many = [w for w in run.workloads if s.loc[s["workload"] == w, "setting"].nunique() > 1]
    mixed = [w for w in many if "mixed" in w.lower()]
    chosen = mixed or many
    return chosen[0] if chosen else None


def configuration_timeline(run: Run) -> Figure | None:
    """The TX2 study's Figure 3.2: one configuration's worker memory over its inferences, every setting
    change marked and each setting's first inference (the switch spike) shown, with latency below."""
    label = switching_configuration(run)
    if label is None:
        return None
    s = run.samples[run.samples["workload"] == label].reset_index(drop=True)
    theme()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    x = np.arange(len(s))
    floor = _floors(run).get(label)
    rss = s["rss_mb"].to_numpy(float)
    top.plot(x, rss - floor if floor is not None else rss, color=PALETTE[0], lw=1.4)
    bottom.plot(x, s["latency_ms"].to_numpy(float), color=PALETTE[1], lw=0.9)
    names = [str(v).split(":", 1)[-1] for v in s["setting"]]
    changes = [0] + [i for i in range(1, len(s)) if names[i] != names[i - 1]]
    for i in changes:
        for ax in (top, bottom):
            ax.axvline(i, color="#777777", ls="--", lw=0.8)
        top.annotate(names[i], (i, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                     textcoords="offset points", fontsize=8)  # fmt: skip
    first = s.index[s["first_use"] == 1].to_numpy()
    bottom.scatter(first, s.loc[first, "latency_ms"], marker="^", color="#b22222", zorder=3, s=28,
                   label="first use of a setting (switch cost)")  # fmt: skip
    top.set_ylabel("worker RSS over the floor (MiB)" if floor is not None else "worker RSS (MiB)")
    bottom.set_ylabel("latency (ms)")
    if wants_log(s["latency_ms"], 6):
        bottom.set_yscale("log")
        plain_log_y(bottom)
    bottom.set_xlabel(f"inference of {label}, in order (warm-ups included)")
    bottom.legend(loc="upper right", frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
