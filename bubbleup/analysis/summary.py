"""Statistics on saved run directories: load a run, summarise each point, find each setting's cliff.

Everything here reads files only (``manifest.json``, ``samples.csv``, ``points.csv``,
``telemetry.csv``), never processes, so a report can be rebuilt from any run directory,
including an interrupted one, long after the run.

Statistics (per sweep value x setting, pooling the timed samples of every repeat and step):

- ``n``: timed samples of the attempts that finished ``ok`` (warm-ups are never counted);
- ``median_ms`` with a 95% bootstrap CI (``scipy.stats.bootstrap``, percentile method,
  2000 resamples, fixed seed, so a report is reproducible);
- ``mean_ms``, ``min_ms``, ``max_ms``;
- ``p90_ms``/``p95_ms``/``p99_ms`` by nearest rank on the raw samples (the value at rank
  ``ceil(p/100 * n)``, always an observed latency). A tail percentile is flagged *thin* when
  fewer than ``MIN_TAIL_SAMPLES`` samples lie at or above it; ``tail_note`` says so in words
  ("p99 = max (n=30)"), because p99 of 30 samples is simply the slowest one;
- ``rep_median_min_ms``/``rep_median_max_ms``: the spread of per-repeat medians, which shows
  run-to-run drift that the pooled CI cannot;
- ``slowdown``: median / median at the lowest measured pressure (the zero-pressure point when
  the sweep includes 0), and ``qos``, its inverse, Bubble-Up's normalised QoS;
- ``status``: ``ok`` when every attempt at the point finished, else ``timeout`` (if any timed
  out) or ``failed``, with ``n_attempts``/``n_failed`` and the first error message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from bubbleup.analysis.stats import nearest_rank  # the one nearest-rank definition, shared with the worker's points.csv
from bubbleup.store.records import POINT_COLUMNS, SAMPLE_COLUMNS, STATUS_OK, STATUS_TIMEOUT

if TYPE_CHECKING:
    from bubbleup.analysis.cliff import Cliff

#: A tail percentile resting on fewer samples than this (at or above it) is flagged thin.
MIN_TAIL_SAMPLES = 5
#: Bootstrap resamples for the CI of each median.
N_RESAMPLES = 2000
CONFIDENCE = 0.95
PERCENTILES = (90, 95, 99)

_SAMPLE_TEXT = ("axis", "workload", "setting", "phase", "info")
_POINT_TEXT = ("axis", "workload", "setting", "status", "error")
_KEY = ["repeat", "value", "step", "setting"]


@dataclass(frozen=True)
class MissingPoint:
    """A planned (repeat, value) whose settings have no row in points.csv: the run stopped first."""

    repeat: int
    value: float
    settings: tuple[str, ...]  # the settings missing at this point (all of them when none ran)


@dataclass(frozen=True)
class Run:
    """A run directory read into memory; immutable so figures and tables see the same data."""

    path: Path
    manifest: dict[str, Any]
    samples: pd.DataFrame
    points: pd.DataFrame
    telemetry: pd.DataFrame | None = None
    notes: tuple[str, ...] = field(default=())  # problems met while reading (bad rows, missing files)
    #: Planned curves in run order: setting names, or ``workload:setting`` when a run measures several workloads.
    planned: tuple[str, ...] = field(default=())
    workloads: tuple[str, ...] = field(default=())  # workload labels, in the manifest's order

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def status(self) -> str:
        return str(self.manifest.get("status") or "unknown")

    @property
    def effective(self) -> dict[str, Any]:
        return dict(self.manifest.get("scenario_effective") or {})

    @property
    def axis(self) -> str:
        """``count`` or ``size_mb``: from the effective scenario, else from the data."""
        sweep = self.effective.get("sweep") or {}
        if sweep.get("axis"):
            return str(sweep["axis"])
        for frame in (self.points, self.samples):
            if len(frame) and "axis" in frame:
                return str(frame["axis"].iloc[0])
        return "count"

    @property
    def settings(self) -> list[str]:
        """Every curve (setting, or ``workload:setting``) in the manifest's order, then any others in the data."""
        names = list(self.planned)
        for frame in (self.points, self.samples):
            if "setting" in frame:
                names.extend(str(s) for s in frame["setting"].dropna().unique())
        return list(dict.fromkeys(names))

    @property
    def plan(self) -> list[tuple[int, float]]:
        """Planned (repeat, value) points in execution order; the manifest may hold dicts or pairs."""
        out = []
        for item in self.manifest.get("plan") or []:
            if isinstance(item, dict):
                out.append((int(item.get("repeat", 0)), float(item["value"])))
            else:
                out.append((int(item[0]), float(item[1])))
        return out

    @property
    def values(self) -> list[float]:
        """Planned sweep values (sorted), plus any found in the data."""
        vals = [v for _, v in self.plan]
        vals += [float(v) for v in (self.effective.get("sweep") or {}).get("values") or []]
        vals += [float(v) for v in self.points.get("value", pd.Series(dtype=float)).dropna()]
        return sorted(set(vals))

    @property
    def bubble(self) -> dict[str, Any]:
        return dict(self.effective.get("bubble") or {})


def _read_csv(path: Path, columns: Sequence[str], text: Iterable[str], notes: list[str]) -> pd.DataFrame:
    """Read a contract CSV leniently: a missing, empty or truncated file gives what it can, never an exception.

    A run killed mid-write may leave a partial last line; numeric columns are coerced so
    such a row turns into NaNs (dropped later) instead of poisoning a column's dtype.
    """
    empty = pd.DataFrame({c: pd.Series(dtype=object if c in text else float) for c in columns})
    if not path.exists():
        notes.append(f"{path.name} is missing")
        return empty
    try:
        frame = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=True, on_bad_lines="skip")
    except pd.errors.EmptyDataError:
        notes.append(f"{path.name} is empty")
        return empty
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        notes.append(f"{path.name} could not be parsed: {exc}")
        return empty
    for col in columns:
        if col not in frame:
            frame[col] = pd.Series(dtype=object if col in text else float)
    for col in frame.columns:
        if col not in text:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
        else:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory. Tolerates a partial run: missing or empty CSVs become empty frames."""
    path = Path(run_dir)
    notes: list[str] = []
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        notes.append("manifest.json is missing")
        manifest = {}
    except json.JSONDecodeError as exc:
        notes.append(f"manifest.json is not valid JSON: {exc}")
        manifest = {}
    samples = _read_csv(path / "samples.csv", SAMPLE_COLUMNS, _SAMPLE_TEXT, notes)
    # t_s comes after latency_ms: a row without it was cut short mid-write, so its latency may be cut too
    samples = samples.dropna(subset=["value", "latency_ms", "t_s"]).reset_index(drop=True)
    points = _read_csv(path / "points.csv", POINT_COLUMNS, _POINT_TEXT, notes)
    points = points.dropna(subset=["value", "status"]).reset_index(drop=True)
    workloads = _workload_labels(manifest, samples, points)
    planned = _planned_series(manifest, multi=len(workloads) > 1)
    if len(workloads) > 1:  # one curve per (workload, setting): name it so, everywhere downstream
        for frame in (samples, points):
            frame["setting"] = [series_name(w, st) for w, st in zip(frame["workload"], frame["setting"], strict=True)]
    telemetry = None
    if (path / "telemetry.csv").exists():
        tnotes: list[str] = []
        telemetry = _read_csv(path / "telemetry.csv", ("t_s",), (), tnotes)
        telemetry = telemetry.dropna(subset=["t_s"]).reset_index(drop=True)
        telemetry = telemetry.dropna(axis=1, how="all") if len(telemetry) else None
        notes.extend(n for n in tnotes if "missing" not in n)
    return Run(
        path=path,
        manifest=manifest,
        samples=samples,
        points=points,
        telemetry=telemetry,
        notes=tuple(notes),
        planned=tuple(planned),
        workloads=tuple(workloads),
    )


def series_name(workload: Any, setting: Any) -> str:
    """A curve's name in a run of several workloads: ``mcdnn:HH`` (settings of different workloads may share names)."""
    return f"{workload}:{setting}" if workload else str(setting)


def _workload_labels(manifest: dict[str, Any], samples: pd.DataFrame, points: pd.DataFrame) -> list[str]:
    labels = [str(w) for w in manifest.get("workloads") or []]
    for frame in (points, samples):
        labels.extend(str(w) for w in frame["workload"].dropna().unique())
    return list(dict.fromkeys(labels))


def _planned_series(manifest: dict[str, Any], multi: bool) -> list[str]:
    """Curves the run planned, in order: from its steps when several workloads share the run."""
    if multi:
        steps = manifest.get("steps") or []
        return list(dict.fromkeys(series_name(st.get("workload"), st.get("setting")) for st in steps))
    return [str(st) for st in manifest.get("settings") or []]


# -- statistics ---------------------------------------------------------------------------------


def tail_support(n: int, p: float) -> int:
    """How many samples lie at or above the nearest-rank p-th percentile of n samples."""
    if n == 0:
        return 0
    return n - max(1, math.ceil(p / 100.0 * n)) + 1


def median_ci(values: np.ndarray, confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI of the median, percentile method, in batches.

    Not :func:`bubbleup.analysis.stats.median_ci` (BCa, per point): here samples of every repeat are pooled,
    often thousands, and BCa's jackknife holds an n x n array; the percentile method in batches
    stays small, and behaves on the ties a coarse timer produces.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return (math.nan, math.nan)
    if np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    res = stats.bootstrap(
        (values,),
        np.median,
        n_resamples=N_RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        batch=max(1, min(N_RESAMPLES, 4_000_000 // len(values))),
        rng=np.random.default_rng(seed),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def describe(values: np.ndarray) -> dict[str, Any]:
    """Every per-point statistic of one set of timed latencies (ms)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    out: dict[str, Any] = {"n": n}
    if n == 0:
        out.update(median_ms=math.nan, ci_low_ms=math.nan, ci_high_ms=math.nan, mean_ms=math.nan)
        out.update(min_ms=math.nan, max_ms=math.nan, tail_note="")
        for p in PERCENTILES:
            out[f"p{p}_ms"] = math.nan
            out[f"p{p}_thin"] = True
        return out
    lo, hi = median_ci(x)
    out.update(median_ms=float(np.median(x)), ci_low_ms=lo, ci_high_ms=hi, mean_ms=float(x.mean()))
    out.update(min_ms=float(x[0]), max_ms=float(x[-1]))
    notes = []
    for p in PERCENTILES:
        out[f"p{p}_ms"] = nearest_rank(x, p)
        support = tail_support(n, p)
        out[f"p{p}_thin"] = support < MIN_TAIL_SAMPLES
        if support == 1:
            notes.append(f"p{p} = max")
        elif support < MIN_TAIL_SAMPLES:
            notes.append(f"p{p} rests on {support} samples")
    out["tail_note"] = f"{'; '.join(notes)} (n={n})" if notes else ""
    return out


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
    ok = run.points.loc[run.points["status"] == STATUS_OK, _KEY].drop_duplicates()
    return s.merge(ok, on=_KEY, how="inner").reset_index(drop=True)


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


def by_point(frame: pd.DataFrame) -> dict[tuple[float, str], pd.DataFrame]:
    """Rows grouped by (value, setting): one pass instead of a filter per point."""
    if frame.empty:
        return {}
    return {(float(v), str(s)): g for (v, s), g in frame.groupby(["value", "setting"], sort=False)}


def summarise(run: Run) -> pd.DataFrame:
    """Per (value, setting) statistics, sorted by setting (manifest order) then value; see the module docstring.

    Rows exist for every (value, setting) with a row in points.csv or a timed sample;
    planned points that never ran are listed by :func:`missing_points`, not here.
    """
    timed = timed_samples(run)
    points = run.points
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
    bubble = run.bubble
    if run.axis == "size_mb":
        return float(bubble.get("count", 1) or 1), value
    return value, float(bubble.get("size_mb", math.nan) or math.nan)


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
    """Planned (repeat, value) points, or settings within them, with no row in points.csv."""
    settings = list(run.planned) or run.settings
    done: dict[tuple[int, float], set[str]] = {}
    for rep, val, setting in zip(run.points["repeat"], run.points["value"], run.points["setting"], strict=True):
        done.setdefault((int(rep), float(val)), set()).add(str(setting))
    out = []
    for key in run.plan:
        missing = tuple(s for s in settings if s not in done.get(key, set()))
        if missing or (not settings and key not in done):
            out.append(MissingPoint(repeat=key[0], value=key[1], settings=missing))
    return out


def is_partial(run: Run) -> bool:
    """True when the run did not finish or planned points have no data."""
    return run.status != "complete" or bool(missing_points(run))


def find_cliffs(run: Run, summary: pd.DataFrame | None = None) -> list[Cliff]:
    """The cliff of every setting (see :mod:`bubbleup.analysis.cliff` for the definition), in settings order."""
    from bubbleup.analysis.cliff import CurvePoint, detect

    summary = summarise(run) if summary is None else summary
    timed = timed_samples(run)
    smp_by = by_point(timed)
    cliffs = []
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
        cliffs.append(detect(setting, run.axis, curve, fixed=float(fixed.iloc[0]) if len(fixed) else None))
    return cliffs


def cliffs_frame(cliffs: Sequence[Cliff]) -> pd.DataFrame:
    """Cliffs as a table (one row per setting)."""
    from dataclasses import asdict

    return pd.DataFrame([asdict(c) for c in cliffs])


def format_value(value: float | None, axis: str, unit: bool = True) -> str:
    """A sweep value as people write it: ``3`` bubbles, ``512 MiB``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{int(value)}" if float(value).is_integer() else f"{value:g}"
    return f"{text} MiB" if unit and axis == "size_mb" else text


def axis_label(run: Run) -> str:
    """The x-axis title of a latency-vs-pressure figure, with units and the fixed other dimension."""
    bubble = run.bubble
    if run.axis == "size_mb":
        counts = run.points["bubble_count"].dropna().unique() if len(run.points) else []
        count = int(counts[0]) if len(counts) == 1 else bubble.get("count")
        if not count:
            return "bubble size (MiB)"
        return f"bubble size (MiB), {count} bubble{'s' if count != 1 else ''}"
    size = bubble.get("size_mb")
    if size is None:
        return "bubbles running"
    return f"bubbles running (each {format_value(float(size), 'size_mb')})"
