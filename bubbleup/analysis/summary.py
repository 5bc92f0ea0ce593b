"""Per-point summaries of a loaded run (:class:`bubbleup.store.reader.Run`), and each setting's cliff.

Everything here works on saved data only, never processes, so a report can be rebuilt from
any run directory, including an interrupted one, long after the run.

Statistics (per sweep value x setting, pooling the timed samples of every repeat and step):

- ``n``: timed samples of the attempts that finished ``ok`` (warm-ups are never counted);
- ``median_ms`` with its 95% CI, by the one definition in :mod:`bubbleup.analysis.stats`
  (the same as points.csv's);
- ``mean_ms``, ``min_ms``, ``max_ms``;
- ``p90_ms``/``p95_ms``/``p99_ms`` by nearest rank on the raw samples (the value at rank
  ``ceil(p/100 * n)``, always an observed latency). A tail percentile is flagged *thin* when
  fewer than ``MIN_TAIL_SAMPLES`` samples lie at or above it; ``tail_note`` says so in words
  ("p99 = max (n=30)"), because p99 of 30 samples is simply the slowest one;
- ``rep_median_min_ms``/``rep_median_max_ms``: the spread of per-repeat medians, which shows
  run-to-run drift that the pooled CI cannot; ``rep_log_mean``/``rep_log_sd``: the mean and standard
  deviation of their natural logs (sd NaN below two repeats), from which
  :mod:`bubbleup.analysis.monotone` pools the run's repeat-to-repeat noise;
- ``top1`` with ``top1_low``/``top1_high`` (95% Wilson) over ``top1_n`` distinct samples, pooled over the
  point's repeats (:func:`bubbleup.analysis.stats.top1`); NaN when the workload does not say what is correct;
- ``slowdown``: median / median at the lowest measured pressure (the zero-pressure point when
  the sweep includes 0), and ``qos``, its inverse, Bubble-Up's normalised QoS;
- ``status``: ``ok`` when every attempt at the point finished, else ``timeout`` (if any timed
  out) or ``failed``, with ``n_attempts``/``n_failed`` and the first error message.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import pandas as pd

from bubbleup.analysis.cache_link import shared_only
from bubbleup.analysis.speed import for_verdicts
from bubbleup.analysis.stats import describe, top1
from bubbleup.store.reader import Run, of_ok_steps, series_name
from bubbleup.store.records import STATUS_OK, STATUS_TIMEOUT, pressure_failed

if TYPE_CHECKING:
    from bubbleup.analysis.cliff import Cliff, CurvePoint

@dataclass(frozen=True)
class MissingPoint:
    """A planned (repeat, value) whose settings have no row in points.csv: the run stopped first."""

    repeat: int
    value: float
    settings: tuple[str, ...]  # the settings missing at this point (all of them when none ran)


def timed_samples(run: Run) -> pd.DataFrame:
    """Timed samples of attempts that finished ok; what every latency statistic is computed from.

    A step that failed or timed out may have left some samples behind; they describe a
    workload in the middle of dying and are excluded (the point's status says what happened).
    Samples of a step with no row in points.csv (the run stopped mid-point) are excluded too.
    """
    s = run.samples
    if s.empty:
        return s
    s = s[s["phase"].astype(str) == "timed"]
    if run.points.empty:
        return s.reset_index(drop=True)
    return of_ok_steps(s, run.points).reset_index(drop=True)


def _point_status(rows: pd.DataFrame) -> tuple[str, int, int, str]:
    """Aggregate attempts at one (value, setting): status, attempts, non-ok attempts, first error."""
    n_attempts = len(rows)
    bad = rows[rows["status"] != STATUS_OK]
    if bad.empty:
        return STATUS_OK, n_attempts, 0, ""
    status = STATUS_TIMEOUT if (bad["status"] == STATUS_TIMEOUT).any() else str(bad["status"].iloc[0])
    errors = [str(e) for e in bad["error"] if isinstance(e, str) and e.strip()]
    return status, n_attempts, len(bad), errors[0] if errors else ""


SUMMARY_COLUMNS: tuple[str, ...] = (
    "axis",
    "value",
    "setting",
    "status",
    "n_attempts",
    "n_failed",
    "n",
    "n_repeats",
    "median_ms",
    "ci_low_ms",
    "ci_high_ms",
    "mean_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "min_ms",
    "max_ms",
    "p90_thin",
    "p95_thin",
    "p99_thin",
    "tail_note",
    "rep_median_min_ms",
    "rep_median_max_ms",
    "rep_log_mean",
    "rep_log_sd",
    "top1",
    "top1_low",
    "top1_high",
    "top1_n",
    "baseline_value",
    "slowdown",
    "qos",
    "first_use_ms",
    "select_ms",
    "rss_mb_max",
    "bubble_count",
    "bubble_size_mb",
    "error",
)


class SummaryRow(Protocol):
    """One row of :func:`summarise`'s frame as ``itertuples`` gives it (the columns a reader uses)."""

    axis: str
    value: float
    setting: str
    status: str
    n_attempts: int
    n_failed: int
    n: int
    n_repeats: int
    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    mean_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    p90_thin: bool
    p95_thin: bool
    p99_thin: bool
    tail_note: str
    rep_median_min_ms: float
    rep_median_max_ms: float
    rep_log_mean: float
    rep_log_sd: float
    top1: float
    top1_low: float
    top1_high: float
    top1_n: int
    baseline_value: float
    slowdown: float
    qos: float
    first_use_ms: float
    select_ms: float
    rss_mb_max: float
    bubble_count: float
    bubble_size_mb: float
    error: str


def summary_rows(summary: pd.DataFrame) -> Iterator[SummaryRow]:
    """The rows of a :func:`summarise` frame, typed by column (the stubs type every cell as any scalar)."""
    return cast("Iterator[SummaryRow]", summary.itertuples(index=False))


def by_point(frame: pd.DataFrame) -> dict[tuple[float, str], pd.DataFrame]:
    """Rows grouped by (value, setting): one pass instead of a filter per point."""
    if frame.empty:
        return {}
    groups = frame.groupby(["value", "setting"], sort=False)
    # the stubs type each part of a multi-column group key as Hashable; "value" holds numbers
    return {(float(cast(float, v)), str(s)): g for (v, s), g in groups}


def summarise(run: Run) -> pd.DataFrame:
    """Per (value, setting) statistics, sorted by setting (manifest order) then value; see the module docstring.

    Rows exist for every (value, setting) with a row in points.csv or a timed sample;
    planned points that never ran are listed by :func:`missing_points`, not here.
    """
    timed = timed_samples(run)
    # A step whose pressure was never applied measured nothing: its point is left out, as if not run, and
    # the run is INVALID for it (validity's pressure_failed), rather than read as the workload failing there.
    points = run.points[~run.points["error"].map(pressure_failed)] if len(run.points) else run.points
    first_use = run.samples[run.samples["first_use"] == 1] if len(run.samples) else run.samples
    pts_by, smp_by, fu_by = by_point(points), by_point(timed), by_point(first_use)
    rows = []
    for value, setting in set(pts_by) | set(smp_by):
        pts = pts_by.get((value, setting), points.iloc[0:0])
        smp = smp_by.get((value, setting), timed.iloc[0:0])
        fu = fu_by.get((value, setting), first_use.iloc[0:0])
        lat = smp["latency_ms"].to_numpy(dtype=float)
        row: dict[str, Any] = {"axis": run.axis, "value": value, "setting": setting}
        if len(pts):
            row["status"], row["n_attempts"], row["n_failed"], row["error"] = _point_status(pts)
        else:
            row.update(status=STATUS_OK, n_attempts=int(smp["repeat"].nunique()) if len(smp) else 0, n_failed=0)
            row["error"] = ""
        row.update(describe(lat))
        rep_medians = smp.groupby("repeat")["latency_ms"].median() if len(smp) else pd.Series(dtype=float)
        row["n_repeats"] = len(rep_medians)
        row["rep_median_min_ms"] = float(rep_medians.min()) if len(rep_medians) else math.nan
        row["rep_median_max_ms"] = float(rep_medians.max()) if len(rep_medians) else math.nan
        medians = rep_medians.to_numpy(dtype=float)
        logs = np.log(medians[medians > 0])
        row["rep_log_mean"] = float(logs.mean()) if len(logs) else math.nan
        row["rep_log_sd"] = float(logs.std(ddof=1)) if len(logs) > 1 else math.nan
        if len(smp):
            row.update(top1(smp["sample"].to_numpy(dtype=float), smp["correct"].tolist()))
        else:
            row.update(top1([], []))
        row["first_use_ms"] = float(fu["latency_ms"].mean()) if len(fu) else math.nan
        row["select_ms"] = float(pts["select_ms"].median()) if len(pts) and pts["select_ms"].notna().any() else math.nan
        rss = pd.concat([pts["rss_mb_max"], smp["rss_mb"]])
        row["rss_mb_max"] = float(rss.max()) if rss.notna().any() else math.nan
        row["bubble_count"], row["bubble_size_mb"] = _bubble_at(run, value, pts, smp)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if frame.empty:
        return frame
    order = {s: i for i, s in enumerate(run.settings)}
    frame["_o"] = frame["setting"].map(order)
    frame = frame.sort_values(["_o", "value"]).drop(columns="_o").reset_index(drop=True)
    return _add_slowdown(frame)


def _bubble_at(run: Run, value: float, pts: pd.DataFrame, smp: pd.DataFrame) -> tuple[float, float]:
    """Bubble count and size at a point: measured rows first, else what the sweep axis implies."""
    for frame in (pts, smp):
        if len(frame) and frame["bubble_count"].notna().any():
            return float(frame["bubble_count"].iloc[0]), float(frame["bubble_size_mb"].iloc[0])
    if run.axis == "size_mb":
        count = run.sweep_count
        return (float(count) if count is not None else math.nan), value
    return value * run.set_size, run.fixed_size_mb  # a count sweep counts sets: k kinds are k bubbles


def _add_slowdown(frame: pd.DataFrame) -> pd.DataFrame:
    """Slowdown and normalised QoS relative to each setting's lowest measured pressure that worked."""
    frame = frame.copy()
    frame["baseline_value"] = math.nan
    frame["slowdown"] = math.nan
    frame["qos"] = math.nan
    for setting, grp in frame.groupby("setting", sort=False):
        base = grp.sort_values("value").iloc[0]
        if base["status"] != STATUS_OK or not base["median_ms"] > 0:
            continue  # the lowest pressure itself failed: no baseline to normalise by
        idx = frame["setting"] == setting
        frame.loc[idx, "baseline_value"] = base["value"]
        frame.loc[idx, "slowdown"] = frame.loc[idx, "median_ms"] / base["median_ms"]
        frame.loc[idx, "qos"] = base["median_ms"] / frame.loc[idx, "median_ms"]
    return frame


def missing_points(run: Run) -> list[MissingPoint]:
    """Planned (repeat, value) points, or settings within them, with no row in points.csv. An extra repeat
    that measured only some steps (:meth:`Manifest.round_steps`) misses none of the others."""
    settings = list(run.planned) or run.settings
    done: dict[tuple[int, float], set[str]] = {}
    for rep, val, setting in zip(run.points["repeat"], run.points["value"], run.points["setting"], strict=True):
        done.setdefault((int(rep), float(val)), set()).add(str(setting))
    multi = len(run.workloads) > 1
    out = []
    for key in run.plan:
        listed = run.manifest.round_steps(key[0])
        at = None if listed is None else {series_name(w, s) if multi else s for v, w, s in listed if v == key[1]}
        wanted = settings if at is None else [s for s in settings if s in at]
        missing = tuple(s for s in wanted if s not in done.get(key, set()))
        if missing or (not settings and key not in done):
            out.append(MissingPoint(repeat=key[0], value=key[1], settings=missing))
    return out


def is_partial(run: Run) -> bool:
    """True when the run did not finish or planned points have no data."""
    return run.status != "complete" or bool(missing_points(run))


@dataclass(frozen=True)
class SettingCurve:
    """One setting's curve as the cliff detector reads it; :func:`find_cliffs` and the resampled
    verdicts (:func:`bubbleup.analysis.confidence.verdicts`) are built from the same ones."""

    setting: str
    axis: str
    points: tuple[CurvePoint, ...]  # in order of pressure
    fixed: float | None  # bubble size (count axis) or count (size axis)
    set_size: int  # bubbles per set of kinds (``bubbles:``)


def setting_curves(run: Run, summary: pd.DataFrame | None = None) -> list[SettingCurve]:
    """Each setting's curve (pooled and per-repeat timed samples, status per point), in settings order: what
    verdicts are judged on, so its latencies are at one CPU speed where the run's probes allow
    (:func:`bubbleup.analysis.speed.for_verdicts`), without the steps an ``apart`` run timed with the bubbles on
    another L3 (:func:`bubbleup.analysis.cache_link.shared_only`); ``summary`` (raw) gives each point's status."""
    from bubbleup.analysis.cliff import CurvePoint

    summary = summarise(run) if summary is None else summary
    timed = timed_samples(for_verdicts(run))  # at one CPU speed where the run's probes allow (analysis.speed)
    timed = shared_only(timed, run.points)  # placement apart: not the steps the bubbles sat on another L3
    smp_by = by_point(timed)
    set_size = run.set_size
    out = []
    for setting in run.settings:
        rows = summary[summary["setting"] == setting].sort_values("value")
        if rows.empty:
            continue
        curve = []
        for row in rows.itertuples(index=False):
            smp = smp_by.get((float(row.value), setting), timed.iloc[0:0])
            by_rep = {int(r): g["latency_ms"].to_numpy(float) for r, g in smp.groupby("repeat")} if len(smp) else {}
            curve.append(
                CurvePoint(
                    value=float(row.value),
                    samples=smp["latency_ms"].to_numpy(float),
                    by_repeat=by_rep,
                    functional=row.status == STATUS_OK,
                    status=str(row.status),
                    error=str(row.error or ""),
                )
            )
        fixed_col = "bubble_size_mb" if run.axis == "count" else "bubble_count"
        fixed = rows[fixed_col].dropna()
        at = float(fixed.iloc[0]) if len(fixed) else None
        out.append(SettingCurve(setting, run.axis, tuple(curve), at, set_size))
    return out


def find_cliffs(run: Run, summary: pd.DataFrame | None = None) -> list[Cliff]:
    """The cliff of every setting (see :mod:`bubbleup.analysis.cliff` for the definition), in settings order."""
    return cliffs_of(setting_curves(run, summary))


def cliffs_of(curves: Sequence[SettingCurve]) -> list[Cliff]:
    """The cliff of each curve, for callers that also resample or compare the same curves."""
    from bubbleup.analysis.cliff import detect

    return [replace(detect(c.setting, c.axis, c.points, fixed=c.fixed), set_size=c.set_size) for c in curves]


def cliffs_frame(cliffs: Sequence[Cliff]) -> pd.DataFrame:
    """Cliffs as a table (one row per setting)."""
    return pd.DataFrame([asdict(c) for c in cliffs])
