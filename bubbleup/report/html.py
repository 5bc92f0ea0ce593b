"""One self-contained HTML report per run directory: the cliff first, then figures, tables, scenario, environment.

The report is rebuilt from files alone (:mod:`bubbleup.analysis.summary`), so ``bubbleup report RUN_DIR``
works for any run, including an interrupted one, whose report says which points are missing.
Figures are embedded as base64 PNG and the CSS is inline: the file opens offline, can be mailed,
and references nothing outside itself.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import jinja2
import pandas as pd
from matplotlib.figure import Figure

import bubbleup
from bubbleup.analysis import cache_link, confidence, demand, monotone, speed
from bubbleup.analysis import stats as lat_stats
from bubbleup.analysis import summary as summaries
from bubbleup.analysis import validity as run_validity
from bubbleup.analysis.cliff import BREAK, NON_FUNCTIONAL, NONE, Cliff
from bubbleup.analysis.confidence import Verdicts
from bubbleup.analysis.schedule import ScheduleResult
from bubbleup.analysis.schedule import analyse as analyse_schedule
from bubbleup.analysis.summary import MissingPoint, SummaryRow
from bubbleup.formatting import flatten, fmt_ms, format_value, pressure_unit, times
from bubbleup.report import figures, trace_figures
from bubbleup.report.accuracy import AccuracyView, accuracy_context, accuracy_view
from bubbleup.report.facts import run_facts
from bubbleup.report.schedule import schedule_context, schedule_timeline
from bubbleup.report.text import headline, verdict_lines
from bubbleup.store.layout import REPORT
from bubbleup.store.reader import Run, load_run

TEMPLATES = Path(__file__).parent / "templates"
#: A verdict whose modal resample share is below this has its whole resample distribution printed in words.
SURE_SHARE = 0.9


@dataclass(frozen=True)
class FigureBlock:
    """One embedded figure with the words a reader needs to read it."""

    id: str
    title: str
    caption: str
    uri: str


#: (id, title, caption, draw): ``draw`` returns a matplotlib Figure, or None when its data is absent.
FigureSpec = tuple[str, str, str, Callable[[], Figure | None]]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ms"] = fmt_ms
    env.filters["times"] = times
    return env


def to_yaml(data: Any) -> str:
    """Scenario dicts as YAML, the way users wrote them (JSON if PyYAML is unavailable)."""
    try:
        import yaml

        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True).strip()
    except Exception:  # any failure to dump falls back to JSON, never breaks a report
        return json.dumps(data, indent=2, default=str)


def describe_missing(run: Run, missing: Sequence[MissingPoint]) -> list[str]:
    """Missing points in words, one line per repeat (counted from 1, as progress does; the files count from 0):
    ``repeat 1: 3, 4, 5 bubbles (all settings)``."""
    all_settings = set(run.planned or run.settings)
    lines = []
    for rep in sorted({m.repeat for m in missing}):
        parts = []
        for m in sorted((m for m in missing if m.repeat == rep), key=lambda m: m.value):
            v = format_value(m.value, run.axis)
            parts.append(v if set(m.settings) >= all_settings else f"{v} ({', '.join(m.settings)})")
        unit = pressure_unit(run.axis, run.set_size)
        lines.append(f"repeat {rep + 1}: {', '.join(parts)}{' ' + unit if unit else ''}")  # from 1 in words
    return lines


def status_words(run: Run, missing: Sequence[MissingPoint]) -> tuple[str, str]:
    """(css class, sentence) for the banner at the top of the report."""
    n_plan = len(run.manifest.plan or [])
    if run.status == "complete" and not missing:
        what = "the one planned point was" if n_plan == 1 else f"all {n_plan} planned points were"
        return "ok", f"Complete: {what} measured."
    lead = {
        "interrupted": "Interrupted run: the data below is partial.",
        "failed": "Failed run: the data below is partial.",
        "running": "The run had not finished when this report was written (or died without a final status): "
        "the data below is partial.",
        "complete": "The run is marked complete, but some planned points have no data.",
    }.get(run.status, f"Run status '{run.status}': the data below may be partial.")
    if missing:
        lead += f" {len(missing)} of {n_plan} planned points (repeat x value) are missing, in whole or in part."
    return "partial", lead


def cliff_rows(
    cliffs: Sequence[Cliff],
    summary: pd.DataFrame,
    verdicts: Sequence[Verdicts] = (),
    falls: Sequence[monotone.Fall] = (),
    predictions: Sequence[demand.DemandPrediction] = (),
) -> list[dict[str, Any]]:
    """The summary table: one row per setting, its verdict in a word and the evidence; beside the detector's
    verdict, how often resampled curves reach it (or what they say instead) and the curve's largest fall."""
    by_setting = {v.setting: v for v in verdicts}
    fall_of = {f.setting: f for f in falls}
    predicted = {p.setting: p for p in predictions}
    values = sorted(float(v) for v in summary["value"].unique()) if len(summary) else []
    rows = []
    for c in cliffs:
        verdict = {BREAK: "cliff", NON_FUNCTIONAL: "stops working", NONE: "no cliff"}.get(c.kind, c.kind)
        jump = ""
        if c.kind == BREAK:
            jump = times(c.jump)
            if c.jump_low is not None and not math.isnan(c.jump_low):
                jump += f" [{times(c.jump_low)}, {times(c.jump_high)}]"
        base = summary[(summary["setting"] == c.setting) & (summary["value"] == c.baseline)]
        v = by_setting.get(c.setting)
        fall = fall_of.get(c.setting)
        pred = predicted.get(c.setting)
        resampled = v if v is not None and v.n_resamples > 0 else None
        agrees = resampled is None or confidence.agrees(c, resampled)
        sure = resampled is None or resampled.modal_share >= SURE_SHARE
        rows.append(
            {
                "setting": c.setting,
                "verdict": verdict,
                "kind": c.kind,
                "tolerated": format_value(c.tolerated, c.axis) if c.tolerated is not None else "none",
                "at": format_value(c.at, c.axis) if c.at is not None else "-",
                "jump": jump,
                "baseline_ms": fmt_ms(base["median_ms"].iloc[0]) if len(base) else "-",
                "slowdown": times(c.slowdown) if c.slowdown is not None else "-",
                "sentence": c.sentence(),
                "confidence": confidence.beside(c, v) if v else "",
                "resamples": _resample_cell(v),
                "agrees": agrees,
                "sure": sure,
                "care": bool(fall) or not (agrees and sure),
                "fall": fall.sentence() + "." if fall else "",
                "predicted": pred.sentence(c, values) if pred else "",
                "short": c.short(),
                "predicted_short": pred.short(c, values) if pred else "",
                "demand_why": pred.why() if pred else "",
                "note": c.note,
            }
        )
    return rows


def _resample_cell(v: Verdicts | None) -> str:
    """The modal resampled verdict and its share, for the table: ``cliff at 3 (94%)``."""
    if v is None or v.n_resamples == 0:
        return "-"
    return f"{v.where(v.modal, short=True)} ({confidence.percent(v.modal_share)})"


def stats_rows(summary: pd.DataFrame, axis: str) -> list[dict[str, Any]]:
    """The per-point statistics table; thin tail percentiles are marked so no one over-reads a p99."""
    rows = []
    for r in summaries.summary_rows(summary):

        def tail(p: int, r: SummaryRow = r) -> str:
            value = fmt_ms(getattr(r, f"p{p}_ms"))
            return value + ("\u2020" if getattr(r, f"p{p}_thin") and r.n > 0 else "")

        spread = "-"
        if r.n_repeats > 1:
            spread = f"{fmt_ms(r.rep_median_min_ms)}-{fmt_ms(r.rep_median_max_ms)}"
        rows.append(
            {
                "setting": r.setting,
                "value": format_value(r.value, axis),
                "status": r.status,
                "attempts": f"{r.n_attempts - r.n_failed}/{r.n_attempts}" if r.n_failed else str(r.n_attempts),
                "n": r.n,
                "median": fmt_ms(r.median_ms),
                "ci": f"{fmt_ms(r.ci_low_ms)}-{fmt_ms(r.ci_high_ms)}",
                "mean": fmt_ms(r.mean_ms),
                "p90": tail(90),
                "p95": tail(95),
                "p99": tail(99),
                "max": fmt_ms(r.max_ms),
                "spread": spread,
                "slowdown": times(r.slowdown) if not math.isnan(r.slowdown) else "-",
                "qos": f"{r.qos:.2f}" if not math.isnan(r.qos) else "-",
                "rss": fmt_ms(r.rss_mb_max),
                "first_use": fmt_ms(r.first_use_ms),
                "select": fmt_ms(r.select_ms),
                "top1": f"{r.top1:.1%} (n={r.top1_n})" if r.top1_n > 0 else "-",
                "error": r.error or "",
                "tail_note": r.tail_note,
            }
        )
    return rows


class _FailedPoint(Protocol):
    """A row of points.csv as read (:func:`bubbleup.store.reader.load_run`): the columns the report lists."""

    repeat: float  # numeric columns are read as numbers, NaN where a cut row left them empty
    value: float
    setting: str
    status: str
    error: str | None


def _failed_rows(points: pd.DataFrame) -> Iterator[_FailedPoint]:
    return cast("Iterator[_FailedPoint]", points.itertuples(index=False))


def single_pressure(run: Run) -> bool:
    """A run planned at one pressure compares configurations (e.g. the memory experiment): no curve, no cliff."""
    return len(run.values) == 1


def build_figures(run: Run, summary: pd.DataFrame, cliffs: Sequence[Cliff], curves: bool = True,
                  accuracy: AccuracyView | None = None,
                  changing: ScheduleResult | None = None) -> list[FigureBlock]:  # fmt: skip
    """Every figure the data allows, in reading order; a figure that fails to draw is skipped, not fatal.
    ``curves=False`` (a run at one pressure) leaves out the latency and QoS curves: one point is no curve."""
    pressure = "bubble count" if run.axis == "count" else "bubble size"
    timed = summaries.timed_samples(run)
    specs: list[FigureSpec] = [
        (
            "latency",
            f"Median latency vs {pressure}",
            "One line per setting: the median of every timed inference at that pressure (repeats pooled), its "
            "95% confidence band (order statistics), the detected cliff circled (its label: the jump of the "
            "interquartile means the detector judges), failed or timed-out points as crosses on the bottom edge.",
            lambda: figures.latency_curve(run, summary, cliffs) if curves else None,
        ),
        (
            "qos",
            f"Normalised QoS vs {pressure} (Bubble-Up sensitivity curve)",
            "Median latency at the lowest pressure divided by median latency at each pressure: 1 means unaffected, "
            "0.5 means twice as slow.",
            lambda: figures.latency_curve(run, summary, cliffs, qos=True) if curves else None,
        ),
        (
            "distributions",
            "Latency distributions per point",
            "Box: quartiles and median; whiskers: 1.5 IQR; dots: slower or faster outliers. Timed inferences only.",
            lambda: figures.distributions(run, timed),
        ),
        (
            "memory-trace",
            "Worker memory and latency over time",
            "Worker RSS after each inference (warm-ups included), the same inferences' latency below. Dashed lines "
            "mark setting changes, triangles the first use of a setting in a worker process (its switching cost), "
            "shaded bands and numbers the sweep points.",
            lambda: trace_figures.memory_trace(run),
        ),
        (
            "memory-configurations",
            "Memory per configuration, over the framework floor (the TX2 study's Figure 3.1)",
            "One bar per configuration, coloured by kind: its worker's peak RSS minus the RSS the same process had "
            "with TensorFlow's runtime warm and no model loaded (the framework floor, the same for every "
            "configuration), so what the models themselves cost is visible; the whole-process peak in brackets.",
            lambda: trace_figures.memory_by_configuration(run),
        ),
        (
            "memory-switching",
            "One configuration's memory over time, setting changes marked (the TX2 study's Figure 3.2)",
            "The configuration that switches settings (ApproxNet Mixed when the run has it): worker RSS over the "
            "framework floor after each inference, dashed lines where the setting changes, and below its latency "
            "with each setting's first inference (the switch spike) marked.",
            lambda: trace_figures.configuration_timeline(run),
        ),
        (
            "memory-bars",
            "Peak worker memory per setting",
            "Highest RSS of the worker process while it ran each setting, over the whole run. Settings run in "
            "sequence in one worker, so memory loaded for earlier settings is included in later ones' peaks.",
            lambda: trace_figures.memory_bars(run),
        ),
        (
            "telemetry",
            "System telemetry over time",
            "Every numeric column the telemetry sampler recorded, on the run's clock; shaded bands are sweep points.",
            lambda: trace_figures.telemetry(run),
        ),
    ]
    if accuracy is not None and changing is None:  # a schedule's one point is no pressure level
        p = "median" if accuracy.percentile == 50 else f"p{accuracy.percentile:g}"
        rec = accuracy.recommendation
        specs.insert(2, (
            "accuracy",
            f"Top-1 accuracy against {p} latency, per pressure level",
            f"Each dot a setting at one pressure ({p} latency; bars: 95% Wilson interval of its top-1 over the "
            "distinct frames it answered in the run); each line that level's Pareto frontier, the settings no other "
            "setting beats on both. A network gives a frame the same answer under any pressure, so a setting's "
            "accuracy is the same at every level and pressure moves it left or right only."
            + (" The dashed line is the SLO's budget: left of it a setting fits." if rec is not None else ""),
            lambda: figures.accuracy_latency(run, accuracy.levels, rec.budget_ms if rec is not None else None),
        ))  # fmt: skip
    if changing is not None:
        specs.insert(0, (
            "schedule-timeline",
            "Latency and setting over time under the schedule",
            "Every timed frame of the first repeat on the schedule's clock, one panel per configuration, each dot "
            "coloured by the setting that ran (ticks: the frames an adaptive workload switched on); grey: bubbles "
            "in force (the pool's log); dotted: phase starts; dashed: the SLO.",
            lambda: schedule_timeline(run, changing),
        ))  # fmt: skip
    return draw_figures(specs)


def draw_figures(specs: Sequence[FigureSpec]) -> list[FigureBlock]:
    """Draw and embed each figure; one that fails says so in its caption instead of costing the whole page."""
    blocks = []
    for fid, title, caption, draw in specs:
        try:
            fig = draw()
        except Exception as exc:
            blocks.append(FigureBlock(fid, title, f"This figure could not be drawn: {exc!r}", ""))
            continue
        if fig is not None:
            blocks.append(FigureBlock(fid, title, caption, figures.to_data_uri(fig)))
    return blocks


#: Manifest keys shown in their own sections; every other key goes to the "run metadata" table.
_SHOWN_KEYS = frozenset(
    {"scenario_given", "scenario_effective", "environment", "workload_metadata", "plan", "environment_warnings", "name"}
    | {"validity"}  # shown in the banner at the top
)


def _manifest_misc(run: Run) -> list[tuple[str, str]]:
    """Everything else the store recorded (versions, placement, memory safety, resumes...), so nothing is hidden."""
    rows: list[tuple[str, str]] = []
    for key, value in run.manifest.model_dump(mode="json", exclude_none=True).items():
        if key not in _SHOWN_KEYS:
            rows.extend(flatten(value, key))
    return rows


def render(run: Run) -> str:
    """The report's HTML for a loaded run."""
    return _render(run)[0]


def _render(run: Run) -> tuple[str, list[str]]:
    """The report's HTML and its verdicts as text lines (:func:`bubbleup.report.text.verdict_lines`)."""
    summary = summaries.summarise(run)
    single = single_pressure(run)
    curves = [] if single else summaries.setting_curves(run, summary)
    cliffs = summaries.cliffs_of(curves)
    verdicts = confidence.verdicts_of(curves)
    falls = [] if single else monotone.falls_in(run, summary)
    accuracy = accuracy_view(run, summary)
    predictions = [] if single else demand.predict(run)
    changing = analyse_schedule(run)
    rows = cliff_rows(cliffs, summary, verdicts, falls, predictions)
    missing = summaries.missing_points(run)
    status_class, status_text = status_words(run, missing)
    verdict, recomputed = run_validity.of_run(run, summary)
    failed = run.points[run.points["status"] != "ok"] if len(run.points) else run.points
    ctx = {
        "title": f"bubbleup report: {run.name}",
        "run_path": str(run.path),
        "status_class": status_class,
        "status_text": status_text,
        "validity": verdict,
        "validity_recomputed": recomputed,
        "missing": describe_missing(run, missing),
        "notes": list(run.notes),
        "facts": run_facts(run, summary),
        "cliffs": rows,
        "headline": headline(rows),
        "speed": " ".join(t for t in (speed.facts(run).sentence(), _cache_link(run)) if t),
        "n_resamples": confidence.N_RESAMPLES,
        "single": single,
        "pressure": format_value(float(run.values[0]), run.axis) if single and len(run.values) else "",
        "figures": build_figures(run, summary, cliffs, curves=not single, accuracy=accuracy, changing=changing),
        "schedule": schedule_context(changing),
        "stats": stats_rows(summary, run.axis),
        "accuracy": accuracy_context(accuracy, run.axis),
        "min_tail": lat_stats.MIN_TAIL_SAMPLES,
        "p99_needed": lat_stats.samples_needed(99),
        "failed": [
            {
                "repeat": int(r.repeat) + 1,  # from 1 in words, as every sentence of the report counts them
                "value": format_value(r.value, run.axis),
                "setting": r.setting,
                "status": r.status,
                "error": r.error or "",
            }
            for r in _failed_rows(failed)
        ],
        "scenario_given": to_yaml(run.manifest.scenario_given or {}),
        "scenario_effective": to_yaml(run.manifest.scenario_effective or {}),
        "environment": flatten(run.manifest.environment or {}),
        "workload_metadata": flatten(run.manifest.workload_metadata or {}),
        "manifest_misc": _manifest_misc(run),
        "env_warnings": [str(w) for w in run.manifest.environment_warnings or []],
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": bubbleup.__version__,
    }
    lines = changing.lines() if changing is not None else [*verdict_lines(rows), str(ctx["speed"])]
    if status_class == "partial":  # said on the command line too, not only in the report's banner
        resume = f" 'bubbleup run --resume {run.path}' measures what is missing." if missing else ""
        lines = [status_text + resume, *lines]
    return environment().get_template("report.html.j2").render(**ctx), lines


def _cache_link(run: Run) -> str:
    """Under ``placement: apart``, whether the bubbles' CPUs shared the workload's L3 at every step ("" otherwise)."""
    found = cache_link.facts(run.points, run.axis)
    return found.sentence() if found is not None else ""


@dataclass(frozen=True)
class Written:
    """A written report and its verdicts in words (one line per setting), for the command line to print."""

    path: Path
    verdicts: tuple[str, ...]


def write(run_dir: Path) -> Written:
    """Write ``run_dir/report.html`` from the run's files. Works for partial runs."""
    run_dir = Path(run_dir)
    html, lines = _render(load_run(run_dir))
    out = run_dir / REPORT
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)  # never leave a half-written report behind
    return Written(out, tuple(lines))


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from the run's files and return its path. Works for partial runs."""
    return write(run_dir).path
