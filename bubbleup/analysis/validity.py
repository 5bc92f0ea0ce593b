"""Is this run VALID? Every reason it is not, from its files alone (MLPerf LoadGen's "Result is: VALID").

A contention measurement is only worth reading if the pressure it reports is the pressure the
workload met: every bubble held what it was asked to, nothing else loaded the machine, each step
measured as precisely as asked, and more pressure never made the workload faster. Each rule
below reads only stored data (manifest, points.csv, telemetry.csv, bubbles.csv), so a report can
recompute the verdict of any run, old or new; checks a run's data cannot support (a run older
than bubbles.csv, telemetry off) are listed as *unchecked*, never silently passed as valid.

Reasons, by code (thresholds are module constants):

- ``bubble_rss``: a bubble held less than ``RSS_FRACTION`` (95%) of its size target at some
  sample between ready and stop (``bubbles.csv`` ``region_min_mb``: the sampler's lowest RSS of the
  bubble, less what it had besides its region at ready).
- ``bubble_duty`` / ``bubble_rate``: see :func:`delivery_misses`: short of its duty or rate while
  the CPUs it could run on had room.
- ``machine_busy_start``: before the first point (and at each resume) processes outside the run
  used more than ``OUTSIDE_CPU_CORES`` cores over the start check's window.
- ``machine_busy``: during a point, processes outside the run used more than ``OUTSIDE_CPU_CORES``
  cores on average (telemetry ``outside_cpu_cores``, the point's first and last samples left out:
  they straddle bubbles starting and stopping, whose last CPU time is lost when they exit). Why
  0.25 cores: the pressure steps measured are one bubble, a whole core or a duty fraction of one
  (0.5 in the shipped synthetic scenarios); a quarter core of someone else's work is half such a
  step, enough to move a point or hide a cliff, and far above what a quiet machine shows (daemons:
  a few hundredths). The average, not the median, so a burst of one core over a third of a point
  counts as the contamination it is; quantisation noise of the CPU clocks averages out.
- ``precision``: a step stopped at a cap (``stopped_by`` ``cap_*``) with its IQM's CI half-width
  still above the target asked for (points.csv ``halfwidth`` > ``target_halfwidth``).
- ``repeats``: with ``sweep.replication``, a step whose repeats still disagreed beyond the target when it
  had ``max_repeats`` (the manifest's last ``replication`` entry).
- ``pressure_failed``: a step ran without the pressure its point asked for (a bubble died, was refused or
  never started; :func:`bubbleup.store.records.pressure_failed`). Its point is left out of the curves;
  a bubble OOM-killed inside a budget is not this but a result (the device cannot hold that pressure).
- ``non_monotone``: a setting got measurably faster with more pressure
  (:func:`bubbleup.analysis.monotone.falls`): the dial is not measuring what it says.
- ``throttled``: the budget's CPU quota throttled the run. A CFS quota stops the whole group until
  the next period once it has used its share: latency then carries pauses of tens of ms that the
  device the budget stands for (with that many real cores) would not have.
- ``concurrent``: another bubbleup run shared the machine (only possible with ``--allow-concurrent``,
  :mod:`bubbleup.machine.lock`).
- ``baseline_failed``: every step of a setting with no pressure (a count sweep's 0 bubbles) failed or timed
  out, for a reason of the workload's own (a program that fails, a model that does not load): without a
  baseline the setting's curve compares pressure with nothing. Not a failure with bubbles up (that is the
  workload's result), nor a budget's OOM kill, nor one failed repeat among working ones.
- ``no_data``: no point was measured (points.csv has no row): nothing to be valid about.
- ``damaged``: a file of the run could not be read (a manifest that is not JSON, a CSV that does not parse), or
  samples.csv holds fewer timed inferences than points.csv counts (cut short or edited after the run): what
  the report shows of the run may be only part of it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bubbleup.errors import UserError
from bubbleup.formatting import busiest, plural, pressure
from bubbleup.store import manifest as manifest_io
from bubbleup.store.layout import MANIFEST
from bubbleup.store.reader import UNREADABLE, Run, load_run, of_ok_steps, series_name
from bubbleup.store.records import BUDGET_OOM, OUTSIDE_CPU_CORES, STATUS_OK, pressure_failed

#: A bubble missed its size target below this share of it.
RSS_FRACTION = 0.95
#: A bubble missed its duty (or rate) below this share of it, when its CPUs had room.
DELIVERY_FRACTION = 0.90
#: The CPUs a bubble may run on are saturated at or above this mean busy percent. Not 90: in the main
#: job a full-duty bubble sharing its pinned CPU with a workload thread delivered 0.73 of a core while
#: the sampler saw that CPU 88% busy (the sampler's 0.1 s windows and the bubble's whole loop are not
#: the same interval), and was flagged; a bubble short by 10% with a quarter of its CPU idle is not.
SATURATED_PERCENT = 75.0
#: A bubble's delivery is judged only over a loop at least this long (a few duty periods).
MIN_DELIVERY_WALL_S = 0.5
#: At most this many places are named in one reason's message.
MAX_NAMED = 4


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True)
class Validity:
    valid: bool
    reasons: list[Reason] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # checks the data could not support

    @property
    def word(self) -> str:
        return "VALID" if self.valid else "INVALID"

    def short(self) -> str:
        """``VALID``, or ``INVALID (machine_busy, repeats)``: the verdict and its reasons' codes, inside a sentence."""
        return self.word if self.valid else f"INVALID ({', '.join(r.code for r in self.reasons)})"

    def lines(self) -> list[str]:
        """``Result is: VALID``, or ``Result is: INVALID`` and one line per reason; then what was not checked."""
        out = [f"Result is: {self.word}", *(f"  {r.code}: {r.message}" for r in self.reasons)]
        if self.unchecked:
            out.append(f"  not checked: {'; '.join(self.unchecked)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "reasons": [asdict(r) for r in self.reasons], "unchecked": list(self.unchecked)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Validity:
        reasons = [Reason(str(r.get("code", "")), str(r.get("message", ""))) for r in data.get("reasons") or []]
        return cls(bool(data.get("valid")) and not reasons, reasons, [str(u) for u in data.get("unchecked") or []])


def of_run(run: Run, summary: pd.DataFrame | None = None) -> tuple[Validity, bool]:
    """The verdict the run recorded as it ended, else (a run older than the verdict) one computed now;
    the flag says whether it was recomputed. The files are checked again either way (cheap, and the run is
    read already): a samples.csv cut or a file broken after the run ended makes a recorded VALID INVALID."""
    recorded = run.manifest.validity
    if not recorded:
        return check(run, summary), True
    verdict = Validity.from_dict(recorded)
    since = [r for r in _damaged_or_empty(run) if r not in verdict.reasons]
    if since:
        verdict = Validity(False, [*verdict.reasons, *since], verdict.unchecked)
    return verdict, False


def of_dir(run_dir: Path) -> Validity:
    """The verdict of a run that has just ended: the manifest's alone when it recorded one (a schedule's
    samples.csv can hold hundreds of thousands of rows, and reading them to print two lines doubled a report's
    time), else :func:`of_run` on the whole run. Whatever reads the run's data again uses :func:`of_run`."""
    try:
        recorded = manifest_io.read(run_dir / MANIFEST).validity
    except UserError:
        recorded = None  # unreadable here: load_run says why, as the verdict's `damaged` reason
    if recorded:
        return Validity.from_dict(recorded)
    return of_run(load_run(run_dir))[0]


def check(run: Run, summary: pd.DataFrame | None = None) -> Validity:
    """Every reason the run is INVALID (see the module docstring), from its files alone."""
    reasons: list[Reason] = []
    unchecked: list[str] = []
    for rule in (_pressure_failed, _baseline_failed, _bubble_rss, delivery_misses, _busy_at_start, _busy_during,
                 _precision, _repeats, _throttled, _concurrent):  # fmt: skip
        reasons += rule(run, unchecked)
    reasons += _non_monotone(run, summary)
    reasons += _damaged_or_empty(run)
    return Validity(not reasons, reasons, unchecked)


# -- where ----------------------------------------------------------------------------------------------------


def _at(run: Run, value: Any) -> str:
    """A sweep value in words: ``4 bubbles``, ``1 bubble``, ``256 MiB``."""
    return pressure(float(value), run.axis, run.set_size)


def _point(run: Run, repeat: Any, value: Any) -> str:
    return f"{_at(run, value)} (repeat {int(repeat) + 1})"  # repeats count from 1 in words, 0 in the files


def _named(items: list[str]) -> str:
    more = f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else ""
    return "; ".join(items[:MAX_NAMED]) + more


def _point_frames(run: Run) -> dict[tuple[int, float], pd.DataFrame]:
    """Telemetry rows of each point, in time order, without the first and last (bubbles starting, stopping)."""
    tel = run.telemetry
    if tel is None or tel.empty or not {"repeat", "value"} <= set(tel.columns):
        return {}
    out = {}
    for (rep, val), rows in tel.sort_values("t_s").groupby(["repeat", "value"], sort=False):
        out[(int(rep), float(val))] = rows.iloc[1:-1] if len(rows) >= 3 else rows
    return out


# -- the bubbles ----------------------------------------------------------------------------------------------


def _bubbles(run: Run, unchecked: list[str], what: str) -> pd.DataFrame | None:
    if run.bubbles is None:
        unchecked.append(f"{what}: the run has no bubbles.csv (written before bubbleup recorded it)")
    return run.bubbles


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts by column name (a bubbles.csv column is called ``index``, which a row tuple would hide)."""
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _bubble_name(run: Run, b: dict[str, Any]) -> str:
    return f"bubble {int(b['index'])} (pid {int(b['pid'])}) at {_point(run, b['repeat'], b['value'])}"


def _bubble_rss(run: Run, unchecked: list[str]) -> list[Reason]:
    bubbles = _bubbles(run, unchecked, "bubble memory")
    if bubbles is None or bubbles.empty:
        return []
    pts = run.points[run.points["bubble_count"] > 0]
    with_bubbles = {(int(r), float(v)) for r, v in zip(pts["repeat"], pts["value"], strict=True)}
    recorded = {(int(r), float(v)) for r, v in zip(bubbles["repeat"], bubbles["value"], strict=True)}
    if with_bubbles - recorded:
        unchecked.append(f"bubble memory, duty and rate: {len(with_bubbles - recorded)} point(s) with bubbles have "
                         "no bubbles.csv rows (run before it existed, then resumed)")  # fmt: skip
    holders = bubbles[(bubbles["size_mb"] > 0) & bubbles["region_mb"].notna()]  # bubbles that became ready
    measured = holders[holders["rss_samples"] > 0]
    if len(measured) < len(holders):
        unchecked.append(f"bubble memory: {len(holders) - len(measured)} of {len(holders)} memory bubbles had no "
                         "telemetry sample between ready and stop")  # fmt: skip
    short = measured[measured["region_min_mb"] < RSS_FRACTION * measured["size_mb"]]
    if short.empty:
        return []
    named = []
    for b in _records(short):
        fault = f", fault injected: {b['fault']}" if isinstance(b["fault"], str) and b["fault"] else ""
        named.append(f"{_bubble_name(run, b)} held {max(float(b['region_min_mb']), 0.0):.1f} of "
                     f"{int(b['size_mb'])} MiB{fault}")  # fmt: skip
    return [Reason("bubble_rss", f"{len(short)} bubble(s) fell below {RSS_FRACTION:.0%} of their size target "
                                 f"during the point: {_named(named)}")]  # fmt: skip


def _bubble_cpus(run: Run, index: int, n_cpus: int) -> list[int]:
    """The CPUs bubble ``index`` could run on, from the run's recorded placement (all of them if unpinned)."""
    pinned = (run.manifest.cpu_placement or {}).get("bubble_cpus")
    if isinstance(pinned, list) and pinned:
        return [int(pinned[index % len(pinned)])]
    return list(range(n_cpus))


def _busy_percent(rows: pd.DataFrame, cpus: list[int]) -> float:
    cols = [f"cpu{c}_percent" for c in cpus if f"cpu{c}_percent" in rows]
    if not cols or rows.empty:
        return math.nan
    return float(rows[cols].mean(axis=1).mean())


def delivery_misses(run: Run, unchecked: list[str]) -> list[Reason]:
    """Bubbles that missed their duty or rate. The rule, because short of target is not always a miss:

    a full-duty bubble on an oversubscribed CPU *should* get less than a core: it competes as an
    equal, and that shortfall is the very pressure measured. So a bubble misses only when it
    delivered less than ``DELIVERY_FRACTION`` (90%) of its target (``core_share`` of ``duty``,
    ``mb_per_s`` of ``rate_mb_s``) while the CPUs it could run on were *not* saturated: their mean
    busy percent over the point (telemetry per-CPU columns, the point's edges left out) below
    ``SATURATED_PERCENT`` (75%, why there).
    Its CPUs are its pinned CPU under ``spread``, ``apart`` or ``pack`` (manifest ``cpu_placement``'s
    ``bubble_cpus``, bubble *i* on the *i*-th listed CPU), else every CPU.
    A CPU with room left and a bubble short of its share means the bubble did not do its job.
    Points without telemetry and loops shorter than ``MIN_DELIVERY_WALL_S`` are not judged.
    """
    bubbles = _bubbles(run, unchecked, "bubble duty and rate")
    if bubbles is None or bubbles.empty:
        return []
    frames = _point_frames(run)
    n_cpus = int((run.manifest.environment or {}).get("cpu_logical") or 0) or _count_cpu_columns(run)
    misses: dict[str, list[str]] = {"bubble_duty": [], "bubble_rate": []}
    not_judged = 0
    for b in _records(bubbles):
        checks = (("bubble_duty", float(b["duty"]), float(b["core_share"]), "{:.2f} of {:.2f} core"),
                  ("bubble_rate", float(b["rate_mb_s"]), float(b["mb_per_s"]), "{:.0f} of {:.0f} MiB/s"))  # fmt: skip
        for code, target, got, amount in checks:
            if math.isnan(target) or target <= 0:
                continue
            rows = frames.get((int(b["repeat"]), float(b["value"])))
            if math.isnan(got) or rows is None or not float(b["wall_s"]) >= MIN_DELIVERY_WALL_S:
                not_judged += 1
                continue
            if got >= DELIVERY_FRACTION * target:
                continue
            busy = _busy_percent(rows, _bubble_cpus(run, int(b["index"]), n_cpus))
            if math.isnan(busy):
                not_judged += 1
            elif busy < SATURATED_PERCENT:
                misses[code].append(f"{_bubble_name(run, b)} delivered {amount.format(got, target)} "
                                    f"while its CPUs were {busy:.0f}% busy")  # fmt: skip
    if not_judged:
        unchecked.append(f"bubble duty and rate: {not_judged} bubble target(s) without the telemetry or the "
                         f"running time (>= {MIN_DELIVERY_WALL_S:g} s) to judge them")  # fmt: skip
    what = {"bubble_duty": "CPU duty", "bubble_rate": "bandwidth rate"}
    reasons = []
    for code, items in misses.items():
        if items:
            message = (f"{len(items)} bubble(s) missed their {what[code]} (< {DELIVERY_FRACTION:.0%}) with CPU to "
                       f"spare (< {SATURATED_PERCENT:.0f}% busy): {_named(items)}")  # fmt: skip
            reasons.append(Reason(code, message))
    return reasons


def _count_cpu_columns(run: Run) -> int:
    tel = run.telemetry
    if tel is None:
        return 0
    return sum(1 for c in tel.columns if c.startswith("cpu") and c.endswith("_percent") and c != "cpu_percent")


# -- the machine ----------------------------------------------------------------------------------------------


def _busy_at_start(run: Run, unchecked: list[str]) -> list[Reason]:
    checks = run.manifest.machine_checks
    if not checks:
        unchecked.append("machine at start: no start check recorded (a run older than it, or one that ended before it)")
        return []
    busy = [c for c in checks if float(c.get("outside_cpu_cores") or 0.0) > OUTSIDE_CPU_CORES]
    if not busy:
        return []
    named = [f"{float(c['outside_cpu_cores']):.2f} cores over {float(c.get('window_s') or 0):g} s "
             f"({c.get('when', 'at start')}){busiest(c.get('busiest'))}" for c in busy]  # fmt: skip
    return [Reason("machine_busy_start", f"the machine was busy before measuring: processes outside the run used "
                                         f"{_named(named)} (limit {OUTSIDE_CPU_CORES} cores)")]  # fmt: skip


def _busy_during(run: Run, unchecked: list[str]) -> list[Reason]:
    frames = _point_frames(run)
    col = "outside_cpu_cores"
    have = {k: rows for k, rows in frames.items() if col in rows and rows[col].notna().any()}
    if not have:
        unchecked.append("machine during points: no outside-CPU telemetry (telemetry off, no point measured, or a run "
                         "older than it)")  # fmt: skip
        return []
    if len(have) < len(frames):
        unchecked.append(f"machine during points: {len(frames) - len(have)} point(s) without outside-CPU telemetry")
    busy = []
    for (rep, val), rows in have.items():
        mean = float(rows[col].mean())
        if mean > OUTSIDE_CPU_CORES:
            busy.append((mean, float(rows[col].max()), rep, val))
    if not busy:
        return []
    worst = sorted(busy, reverse=True)
    who = {(int(p["repeat"]), float(p["value"])): p.get("busiest") for p in run.manifest.busy_points}
    named = [f"{_point(run, rep, val)}: {mean:.2f} cores on average, up to {peak:.2f}{busiest(who.get((rep, val)))}"
             for mean, peak, rep, val in worst]  # fmt: skip
    return [Reason("machine_busy", f"the machine was busy during {len(busy)} of {len(have)} point(s): processes "
                                   f"outside the run used more than {OUTSIDE_CPU_CORES} cores beside it: "
                                   f"{_named(named)}")]  # fmt: skip


def _concurrent(run: Run, unchecked: list[str]) -> list[Reason]:
    others = run.manifest.concurrent_runs
    if not others:
        return []
    named = [f"pid {o.get('pid')}, run directory {o.get('run_dir')} ({o.get('relation', 'concurrent')})"
             for o in others]  # fmt: skip
    return [Reason("concurrent", f"{len(others)} other bubbleup run(s) shared the machine (--allow-concurrent): "
                                 f"{_named(named)}")]  # fmt: skip


def _throttled(run: Run, unchecked: list[str]) -> list[Reason]:
    final = run.manifest.budget_final_stats
    if not run.manifest.budget or not final:
        return []
    periods, secs = final.get("cpu_throttled_periods"), final.get("cpu_throttled_s")
    if periods is None and secs is None:
        if run.manifest.budget.get("cpu_quota_us"):  # no quota (memory only, or more CPUs than here): nothing to say
            unchecked.append("budget CPU throttling: this kernel's cgroup did not say")
        return []
    periods, secs = int(periods or 0), float(secs or 0.0)
    if periods <= 0 and secs <= 0:
        return []
    usage = final.get("cpu_usage_s")
    share = f" (against {float(usage):.1f} s of CPU used)" if usage else ""
    message = (f"the budget's CPU quota throttled the run {periods} time(s), {secs:.2f} s in all{share}: every "
               "throttle pauses the whole group until the next quota period")  # fmt: skip
    return [Reason("throttled", message)]


# -- the measurements -----------------------------------------------------------------------------------------


def _pressure_failed(run: Run, unchecked: list[str]) -> list[Reason]:
    p = run.points
    if p.empty or "error" not in p.columns:
        return []
    failed = p[p["error"].map(pressure_failed)]
    if failed.empty:
        return []
    points = failed[["repeat", "value"]].drop_duplicates()
    named = [_point(run, r["repeat"], r["value"]) for r in _records(points)]
    return [Reason("pressure_failed", f"{len(failed)} of {len(p)} step(s), at {_named(named)}, ran without the "
                                      f"pressure asked for and are left out of the curves: "
                                      f"{str(failed['error'].iloc[0])[:300]}")]  # fmt: skip


def _baseline_failed(run: Run, unchecked: list[str]) -> list[Reason]:
    """Settings none of whose steps without pressure (no bubble running: a count sweep's 0) worked. With bubbles
    up, a failure is the workload's result ("does not work even at ..."), and so is a budget's OOM kill; one
    failed repeat among working ones is a crash the curve can do without."""
    p = run.points
    if p.empty or run.axis != "count" or "bubble_count" not in p.columns:
        return []
    base = p[pd.to_numeric(p["bubble_count"], errors="coerce") == 0]
    by_setting = base.groupby("setting", sort=False)
    dead = [str(s) for s, g in by_setting if not (g["status"] == STATUS_OK).any()
            and not g["error"].map(lambda e: isinstance(e, str) and BUDGET_OOM in e).any()]  # fmt: skip
    failed = base[base["setting"].isin(dead)]
    if failed.empty:
        return []
    named = [f"{s} ({', '.join(sorted(set(g['status'].astype(str))))})"
             for s, g in failed.groupby("setting", sort=False)]  # fmt: skip
    first = str(failed["error"].iloc[0])[:300]
    return [Reason("baseline_failed", f"{plural(len(dead), 'setting')} failed in every step with no pressure: "
                                      f"{_named(named)}; first error: {first}")]  # fmt: skip


def _precision(run: Run, unchecked: list[str]) -> list[Reason]:
    p = run.points
    if p.empty or not {"stopped_by", "halfwidth", "target_halfwidth"} <= set(p.columns):
        return []
    capped = p[p["stopped_by"].astype(str).str.startswith("cap_")]
    hw = pd.to_numeric(capped["halfwidth"], errors="coerce")
    target = pd.to_numeric(capped["target_halfwidth"], errors="coerce")
    short = capped[(hw > target) & target.notna()]
    if short.empty:
        return []
    named = [f"{r['setting']} at {_point(run, r['repeat'], r['value'])}: +/-{float(r['halfwidth']):.1%} reached, "
             f"+/-{float(r['target_halfwidth']):.1%} asked ({r['stopped_by']})" for r in _records(short)]  # fmt: skip
    return [Reason("precision", f"{len(short)} of {len(p)} step(s) stopped at a cap before their IQM reached "
                                f"the precision asked: {_named(named)}")]  # fmt: skip


def _repeats(run: Run, unchecked: list[str]) -> list[Reason]:
    rounds = run.manifest.replication
    rule = (run.manifest.scenario_effective.get("sweep") or {}).get("replication") or {}
    if not rounds or rounds[-1].get("repeat") is not None:  # none asked, or the rounds never ended (a stopped run)
        return []
    unmet = rounds[-1].get("points") or []
    if not unmet:
        return []
    target = float(rule.get("target") or math.nan)
    multi = len(run.workloads) > 1
    named = [f"{series_name(p.get('workload'), p['setting']) if multi else p['setting']} at {_at(run, p['value'])}: "
             f"+/-{_beyond(float(p['relative_se']), target)} over {p['repeats']} repeats"
             for p in unmet]  # fmt: skip
    return [Reason("repeats", f"{len(unmet)} step(s) still disagreed beyond +/-{target:.1%} between repeats at "
                              f"max_repeats: {_named(named)}")]  # fmt: skip


def _samples_cut(run: Run) -> str:
    """``samples.csv holds ...`` when it has fewer timed inferences than points.csv counts for its completed
    steps (cut short or edited after the run: every curve would read fewer samples than were taken), else ""."""
    p, s = run.points, run.samples
    if p.empty or "n" not in p.columns:
        return ""
    counted = int(pd.to_numeric(p.loc[p["status"] == STATUS_OK, "n"], errors="coerce").fillna(0).sum())
    held = len(of_ok_steps(s[s["phase"] == "timed"], p)) if len(s) else 0
    return f"samples.csv holds {held} of the {counted} timed inferences points.csv counts" if held < counted else ""


def _beyond(value: float, target: float) -> str:
    """``value`` as a percentage precise enough to read as above ``target`` (2.54% is not "2.5%" beside 2.5%)."""
    for digits in (1, 2, 3):
        text = f"{value:.{digits}%}"
        if text != f"{target:.{digits}%}":
            return text
    return text


def _damaged_or_empty(run: Run) -> list[Reason]:
    unreadable = [n for n in run.notes if any(words in n for words in UNREADABLE)]
    cut = _samples_cut(run)
    said = ([f"unreadable: {_named(unreadable)}"] if unreadable else []) + ([f"incomplete: {cut}"] if cut else [])
    out = [Reason("damaged", "; ".join(said))] if said else []
    if run.points.empty and run.status != "running":  # a run still starting has measured nothing yet
        out.append(Reason("no_data", "no point was measured (points.csv has no row)"))
    return out


def _non_monotone(run: Run, summary: pd.DataFrame | None) -> list[Reason]:
    from bubbleup.analysis import monotone

    if len(run.values) < 2 or run.points.empty:
        return []
    found = monotone.falls_in(run, summary)
    if not found:
        return []
    return [Reason("non_monotone", f"{len(found)} setting(s) got faster with more pressure: "
                                   f"{_named([f.sentence() for f in found])}")]  # fmt: skip
