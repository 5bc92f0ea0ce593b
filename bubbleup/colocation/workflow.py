"""Bubble-Up's workflow end to end: measure the reporter, score co-runners, predict, and check the predictions.

Every measurement here is an ordinary run through the orchestrator (a run directory each, with its
manifest, validity and report), built from a scenario written in code (:mod:`bubbleup.colocation.reporter`):

1. ``calibrate_reporter``: the reporter's sensitivity curve on this machine;
2. ``score_command``: a co-runner beside the reporter, its bubble score read off that curve;
3. ``workload_curves``: a workload's own curves (a size-sweep run with the Bubble-Up bubble: its
   ``sensitivity.csv``), off which :func:`bubbleup.analysis.prediction.predict` reads the QoS at a score;
4. ``check``: for each co-runner, score it, predict, then co-run the workload with it for real and
   set predicted beside measured QoS, with the error of the naive prediction "no slowdown" beside.

On shared CPUs (``cpu_run``, beyond the paper): ``measure_cpu_curves`` runs the sensitivity run's own
workload under a count sweep of CPU-only bubbles on its own CPUs (:mod:`bubbleup.analysis.cpu_curve`);
``check`` then co-runs each co-runner on the workload's CPUs too, and predicts from both curves.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bubbleup import api
from bubbleup.analysis import cpu_curve, prediction, sensitivity
from bubbleup.analysis.prediction import Score
from bubbleup.colocation import reporter
from bubbleup.errors import RunFailed, UserError
from bubbleup.scenario import scenario_from_dict
from bubbleup.store.layout import default_run_dir, is_run_dir
from bubbleup.store.reader import Run, load_run
from bubbleup.store.records import PRESSURE_NOT, STATUS_OK


def calibrate_reporter(path: Path = reporter.DEFAULT_PATH, reports_root: Path = Path("reports"),
                       repeats: int = reporter.CURVE_REPEATS,
                       sizes: Sequence[int | str] = reporter.SIZES,
                       progress: bool = False) -> reporter.ReporterCurve:  # fmt: skip
    """Measure the reporter's curve here (a size-sweep run under ``reports_root``) and store it at ``path``."""
    scenario = scenario_from_dict(reporter.curve_scenario(sizes, repeats), "reporter curve")
    run = api.run(scenario, default_run_dir(reports_root, scenario.name), reports_root=reports_root,
                  progress=progress)  # fmt: skip
    found = sensitivity.curves(run, (50,))
    if not found:
        raise RunFailed(f"{run.path}: the reporter's size sweep gave no curve (every point failed?)")
    return reporter.save(path, found[0], run.path, reporter.WORKLOAD)


def load_reporter(path: Path, other_machine: bool = False) -> reporter.ReporterCurve:
    """The stored curve; UserError when there is none, or it was measured on another kind of machine."""
    try:
        made = reporter.load(path)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    mismatch = reporter.machine_mismatch(made)
    if mismatch and not other_machine:
        raise UserError(f"{path}: measured on another kind of machine ({'; '.join(mismatch)}); measure it here "
                        f"with 'bubbleup calibrate --reporter', or pass --other-machine to use it anyway")  # fmt: skip
    return made


def _corun(scenario: Any, out: Path, what: str, progress: bool = False, report: bool = True) -> Run:
    """:func:`bubbleup.api.run` of a run with a co-runner: its program failing to run (the run stops at once,
    ``limits.stop_on_pressure_failure``) is the user's input, one line and exit 2, saying ``what`` failed."""
    try:
        return api.run(scenario, out, reports_root=out.parent, progress=progress, report=report)
    except RunFailed as exc:
        if str(exc).startswith(PRESSURE_NOT):
            raise UserError(f"{what}: {exc}") from None
        raise


def _failure(run: Run, value: int) -> str | None:
    rows = run.points[(run.points["value"] == value) & (run.points["status"] != STATUS_OK)]
    return str(rows["error"].iloc[0]) if len(rows) else None


def cpu_demand(programs: reporter.Programs, out: Path, window_s: float = reporter.DEMAND_WINDOW_S,
               startup_s: float = 1.0) -> tuple[float, ...]:  # fmt: skip
    """The cores each of the co-runner's programs keeps busy alone and unpinned: a run of its own for each
    (:func:`bubbleup.colocation.reporter.demand_scenario`; lock, signals, memory guard and cleanup as every run's)
    into :func:`demand_runs` of ``out``, read from its ``bubbles.csv`` (:func:`demand_of_run`).

    Not the score run's figure: there the co-runner is confined to the CPUs the reporter leaves, one on a
    2-CPU machine, so a co-runner with two busy threads measured 1 core, and a prediction on shared CPUs
    read the CPU curve at 1 where the co-runner would take 2. Nor a mix's programs measured together: three
    one-core programs on 2 CPUs keep 0.67 cores each busy there, and a demand of three tasks read as two."""
    cores = []
    for command, where in zip(programs, demand_runs(out, len(programs)), strict=True):
        scenario = scenario_from_dict(reporter.demand_scenario(command, window_s, startup_s), "demand")
        run = _corun(scenario, where, f"score: {shlex.join(command)} could not run alone", report=False)
        failed = _failure(run, 1)
        if failed:
            raise UserError(f"score: {shlex.join(command)} could not run alone: {failed}")
        cores.append(demand_of_run(run))
    return tuple(cores)


def demand_runs(out: Path, programs: int) -> list[Path]:
    """Where the CPU-demand runs of a co-runner of ``programs`` programs go: ``out`` for one, ``out-0``, ``out-1``,
    ... for a mix."""
    return [out] if programs == 1 else [out.with_name(f"{out.name}-{i}") for i in range(programs)]


def demand_of_run(run: Run) -> float:
    """The program's cores from one :func:`cpu_demand` run; RunFailed when it recorded none."""
    b = run.bubbles
    cores = float(b["core_share"].mean()) if b is not None and len(b) else math.nan
    if math.isnan(cores):
        raise RunFailed(f"{run.path}: the co-runner said nothing of the CPU it used (no core_share in bubbles.csv)")
    return cores


def score_command(programs: reporter.Programs, made: reporter.ReporterCurve, out: Path,
                  repeats: int = reporter.SCORE_REPEATS,
                  startup_s: float = 1.0, progress: bool = False) -> tuple[Score, Run]:  # fmt: skip
    """Run the reporter alone and beside the co-runner (one program, or a mix: ``programs``) into ``out`` and read
    its bubble score; its cores are then measured alone and unpinned (:func:`cpu_demand`, into :func:`demand_dir`)."""
    scenario = scenario_from_dict(reporter.score_scenario(programs, made.workload, repeats, startup_s), "score")
    run = _corun(scenario, out, "score: the co-runner could not run beside the reporter", progress)
    failed = _failure(run, 1)
    if failed:
        raise UserError(f"score: the co-runner could not run beside the reporter: {failed}")
    try:
        found = prediction.score_of_run(run, made.curve)
    except ValueError as exc:
        raise RunFailed(str(exc)) from None
    sessions = cpu_demand(programs, demand_dir(out), startup_s=startup_s)
    return replace(found, corunner_cores=sum(sessions), corunner_sessions=sessions), run


def demand_dir(score_dir: Path) -> Path:
    """Where a score run's CPU-demand run goes: beside it, ``<score dir>-demand``."""
    return score_dir.with_name(score_dir.name + "-demand")


def workload_curves(run_dir: Path, percentile: float = 50) -> tuple[Run, list[sensitivity.SensitivityCurve]]:
    """A run's sensitivity curves at ``percentile`` (its sensitivity.csv, else computed); UserError unless it
    is a size sweep of the Bubble-Up bubble with curves at that percentile."""
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir}: not a run directory (no manifest.json)")
    run = load_run(run_dir)
    kinds = {b.get("kind") for b in ([run.bubble] if run.bubble else run.effective.get("bubbles") or [])}
    if run.axis != "size_mb" or kinds != {"bubble-up"}:
        raise UserError(f"{run_dir}: predict needs a run that sweeps the size of a bubble-up bubble "
                        f"(sweep.axis: size_mb, bubble.kind: bubble-up); this one sweeps {run.axis} of "
                        f"{', '.join(sorted(str(k) for k in kinds)) or 'no'} bubbles")  # fmt: skip
    file = run_dir / sensitivity.FILE
    found = sensitivity.read(file) if file.is_file() else sensitivity.curves(run)
    if not found:
        raise UserError(f"{run_dir}: no setting has two working points: no sensitivity curve to read")
    at = [c for c in found if c.percentile == percentile]
    if not at:
        have = sorted({c.percentile for c in found})
        raise UserError(f"{run_dir}: no p{percentile:g} curves (have: {', '.join(f'p{q:g}' for q in have)})")
    return run, at


def manual_score(size_mb: float, cores: float = math.nan) -> Score:
    """A score given by hand (``--score S``, ``--cores C``): no interval, no co-runner measured."""
    return Score(size_mb, size_mb, size_mb, prediction.INSIDE, math.nan, math.nan, math.nan, cores)


# -- the CPU dimension: curves against CPU-only load on the workload's own CPUs -----------------------------

#: Duty of each CPU-only bubble of a CPU-curve run: whole cores, as a co-runner's busy threads keep them. Half-core
#: bubbles (the first choice) sleep and wake every period, and the scheduler's wake-ups put them beside the pinned
#: workload where one busy co-runner of the same total stays on the idle CPU: measured 2026-12-06 on 2 CPUs,
#: ApproxNet's QoS was 0.73-0.79 beside two half-core bubbles (1 core in all) but 0.93-1.05 beside six foreign
#: co-runners each keeping 0.98 cores busy, so every shared-CPU prediction was off by 0.1-0.3.
CPU_CURVE_DUTY = 1.0


def _workload_part(run: Run) -> dict[str, Any]:
    given = dict(run.manifest.scenario_given)
    return {k: given[k] for k in ("workload", "workloads", "limits", "telemetry", "budget") if k in given}


def cpu_curve_scenario(run: Run, repeats: int = 3) -> dict[str, Any]:
    """The sensitivity run's own workload on its own CPUs, beside 0 to (twice the cores it may use) full-core
    CPU-only bubbles that the scheduler places anywhere: the workload's QoS against CPU load that time-shares with
    it. Twice, because up to the cores themselves the scheduler may keep every bubble off the workload's CPU (two
    busy bubbles beside a pinned workload on 2 CPUs cost it 4% in one run and 25% in another); past them it cannot."""
    cores = int((run.manifest.cpu_demand or {}).get("cores") or 1)
    pinned = (run.manifest.cpu_placement or {}).get("workload_cpus")
    out: dict[str, Any] = {
        "name": f"{run.name}-cpu-curve", "description": f"{run.name}'s workload beside CPU-only bubbles on its CPUs",
        "bubble": {"kind": "cpu", "cpu_duty": CPU_CURVE_DUTY},
        "cpus": {"placement": "free", **({"workload": pinned} if isinstance(pinned, list) else {})},
        "sweep": {"axis": "count", "values": list(range(int(2 * cores / CPU_CURVE_DUTY) + 1)), "repeats": repeats,
                  "settle_s": 0.5},
    }  # fmt: skip
    return {**out, **_workload_part(run)}


def measure_cpu_curves(run_dir: Path, out: Path, repeats: int = 3, progress: bool = False) -> Path:
    """Run :func:`cpu_curve_scenario` for the sensitivity run at ``run_dir`` into ``out``; its directory."""
    run, _ = workload_curves(run_dir)
    scenario = scenario_from_dict(cpu_curve_scenario(run, repeats), "cpu curve")
    return api.run(scenario, out, reports_root=out.parent, progress=progress).path


def cpu_curves(cpu_run: Path, sensitivity_run: Run,
               percentile: float = 50) -> tuple[Run, dict[str, cpu_curve.CpuCurve]]:  # fmt: skip
    """The CPU curves of ``cpu_run`` by setting; UserError unless it is a count sweep of CPU-only bubbles
    measured with the same workload as ``sensitivity_run`` (else the two curves describe different programs)."""
    if not is_run_dir(cpu_run):
        raise UserError(f"{cpu_run}: not a run directory (no manifest.json)")
    run = load_run(cpu_run)
    why = cpu_curve.why_not(run)
    if why:
        raise UserError(f"{cpu_run}: {why}")
    mine, theirs = _workload_part(run), _workload_part(sensitivity_run)
    if any(mine.get(k) != theirs.get(k) for k in ("workload", "workloads")):
        raise UserError(f"{cpu_run}: its workload is not the one of {sensitivity_run.path} (same kind, settings "
                        f"and options needed)")  # fmt: skip
    found = {c.setting: c for c in cpu_curve.curves(run, (percentile,))}
    if not found:
        raise UserError(f"{cpu_run}: no setting has a working point at 0 and one beside load: no CPU curve")
    return run, found


# -- checking predictions against real co-runs ------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One co-runner and one setting: predicted QoS beside the QoS measured when they really co-ran."""

    corunner: str
    setting: str
    score_mb: float
    score_low_mb: float
    score_high_mb: float
    corunner_cores: float
    predicted: float
    predicted_low: float
    predicted_high: float
    measured: float
    measured_low: float
    measured_high: float
    error: float  # |predicted - measured|
    naive_error: float  # |1 - measured|: the error of predicting no slowdown
    outside: bool
    memory_predicted: float = math.nan  # on shared CPUs: the memory curve's part of the prediction
    cpu_predicted: float = math.nan  # and the CPU curve's
    cpu_load: float = math.nan  # and where the co-runner sat on the CPU curve (cores, as CpuCurve.load counts them)


def corun_scenario(run: Run, programs: reporter.Programs, repeats: int, startup_s: float,
                   cpus: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The sensitivity run's own workload (same settings, options, precision) alone and beside the co-runner,
    placed as that run placed its bubble, or by ``cpus`` (a CPU-curve run's: the co-runner shares CPUs)."""
    out: dict[str, Any] = {
        "name": reporter.run_name("corun", programs), "description": f"{run.name} beside: {reporter.label(programs)}",
        **reporter.pressure(programs, startup_s),
        "cpus": cpus or run.manifest.scenario_given.get("cpus", {"placement": "apart"}),
        "sweep": {"axis": "count", "values": [0, 1], "repeats": repeats, "settle_s": 0.5},
    }  # fmt: skip
    part = _workload_part(run)  # the co-runner failing to run stops the co-run at once, as the score does
    return {**out, **part, "limits": {**part.get("limits", {}), **reporter.STOP_ON_FAILURE["limits"]}}


def check(run_dir: Path, corunners: Sequence[reporter.Programs], made: reporter.ReporterCurve, out: Path,
          repeats: int = reporter.SCORE_REPEATS, startup_s: float = 1.0, percentile: float = 50,
          progress: bool = False, scores: dict[str, Score] | None = None,
          cpu_run: Path | None = None) -> list[Check]:  # fmt: skip
    """Score, predict and really co-run each co-runner (one program, or a mix run together, one session each);
    every run lands under ``out``, with ``checks.csv``
    and ``check.html`` (the curves with each co-runner's score, prediction and measurement).

    ``scores`` (co-runner label -> score) is read and filled: a co-runner already scored is not scored
    again, so several workloads' predictions can be checked against one score of each co-runner.
    ``cpu_run`` (a CPU-curve run of the same workload): co-run on the workload's CPUs, placed as that run
    placed its bubbles, and predict from the memory and the CPU curve together."""
    run, found = workload_curves(run_dir, percentile)
    cpu: dict[str, cpu_curve.CpuCurve] | None = None
    cpus: dict[str, Any] | None = None
    if cpu_run is not None:
        shared, cpu = cpu_curves(cpu_run, run, percentile)
        cpus = shared.manifest.scenario_given.get("cpus") or {"placement": "free"}
    for programs in corunners:  # every co-runner and co-run valid (programs here) before minutes of runs
        scenario_from_dict(reporter.score_scenario(programs, made.workload, repeats, startup_s), "score")
        scenario_from_dict(corun_scenario(run, programs, repeats, startup_s, cpus), "co-run")
    rows: list[Check] = []
    for i, programs in enumerate(corunners):
        label = reporter.label(programs)
        s = (scores or {}).get(label) or score_command(programs, made, out / f"{i:02d}-score", repeats, startup_s,
                                                       progress)[0]  # fmt: skip
        if scores is not None:
            scores[label] = s
        try:
            predicted = {p.setting: p for p in prediction.predict(found, s, percentile, cpu)}
        except ValueError as exc:
            raise RunFailed(f"check: {label}: {exc}") from None
        scenario = scenario_from_dict(corun_scenario(run, programs, repeats, startup_s, cpus), "co-run")
        corun = _corun(scenario, out / f"{i:02d}-corun", f"check: {label} could not co-run with the workload", progress)
        failed = _failure(corun, 1)
        if failed:
            raise UserError(f"check: {label} could not co-run with the workload: {failed}")
        for setting, (m, m_low, m_high) in prediction.measured_qos(corun, percentile).items():
            p = predicted.get(setting)
            if p is None:
                continue
            rows.append(Check(label, setting, s.size_mb, s.low_mb, s.high_mb, s.corunner_cores, p.qos, p.qos_low,
                              p.qos_high, m, m_low, m_high, abs(p.qos - m), abs(1 - m), p.outside,
                              p.memory_qos if cpu is not None else math.nan, p.cpu_qos, p.cpu_load))  # fmt: skip
    pd.DataFrame([asdict(r) for r in rows]).to_csv(out / "checks.csv", index=False, float_format="%.6g")
    try:
        from bubbleup.report import checks as page

        page.write(out, found, rows, check_summary(rows), run_dir)
    except ImportError as exc:  # the report's libraries are part of every install; say so if one is broken
        print(f"warning: {out / 'check.html'} not written ({exc})")
    return rows


def check_summary(rows: Sequence[Check]) -> list[str]:
    """The mean absolute errors, method against naive, in words."""
    if not rows:
        return ["no co-run gave a comparison"]
    err = sum(r.error for r in rows) / len(rows)
    naive = sum(r.naive_error for r in rows) / len(rows)
    if err <= naive / 2:
        verdict = "the method's error is at most half the naive one"
    elif err < naive:
        verdict = "the method beats the naive prediction, by less than half"
    else:
        verdict = "the method is no better than predicting no slowdown"
    return [f"mean absolute error of the predicted QoS: {err:.3f} over {len(rows)} (co-runner, setting) pairs; "
            f"predicting no slowdown: {naive:.3f} ({verdict})"]  # fmt: skip
