"""The sweep: for each point, bubbles up -> all ready -> settle -> workload runs every step -> record -> bubbles down.

It knows nothing of how a workload infers (that is the worker's business) and
nothing of statistics beyond a per-step summary (analysis works on saved files).

Failure policy, because under enough pressure failing *is* the result:
- the worker dies (crash, OOM kill) or overruns ``limits.step_timeout_s``: that
  step is recorded ``failed``/``timeout``, a fresh worker is started, the sweep goes on;
- a bubble cannot become ready, or dies mid-point: the point's steps are recorded
  ``failed`` with the bubble named, since the pressure asked for was not applied;
- the workload cannot load at all before any pressure: the run fails (exit 1).
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bubbleup.analysis import stats
from bubbleup.errors import BubbleFailed, RunFailed, UserError
from bubbleup.machine import environment, telemetry
from bubbleup.pressure.pool import BubblePool
from bubbleup.run.worker import StepResult
from bubbleup.run.worker_client import WorkerClient, WorkerDied, WorkerError, WorkerTimeout
from bubbleup.scenario import Scenario, WorkloadSpec, scenario_from_dict
from bubbleup.store.records import STATUS_FAILED, STATUS_OK, STATUS_TIMEOUT
from bubbleup.store.writer import RunStore, default_run_dir, now_iso

MIB = 1 << 20


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; everything started is being stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class StepPlan:
    workload: str  # the workload's label
    setting: str
    warmup: int
    inferences: int


def steps_of(spec: WorkloadSpec) -> list[StepPlan]:
    """What a workload runs at every point: an explicit schedule, or every setting in turn."""
    label = spec.label or spec.kind
    if spec.steps is not None:
        return [StepPlan(label, s.setting, s.warmup, s.inferences) for s in spec.steps]
    return [StepPlan(label, s, spec.warmup, spec.inferences_per_setting) for s in spec.settings]


def all_steps(scenario: Scenario) -> list[StepPlan]:
    return [step for spec in scenario.specs for step in steps_of(spec)]


def plan_points(scenario: Scenario) -> list[tuple[int, int]]:
    """(repeat, value) in execution order. Repeats alternate direction (or shuffle) so drift spreads."""
    sweep = scenario.sweep
    ascending = sorted(sweep.values)
    rng = random.Random(sweep.seed)
    plan: list[tuple[int, int]] = []
    for r in range(sweep.repeats):
        if sweep.order == "ascending":
            order = ascending
        elif sweep.order == "alternate":
            order = ascending if r % 2 == 0 else ascending[::-1]
        else:
            order = ascending[:]
            rng.shuffle(order)
        plan.extend((r, v) for v in order)
    return plan


def check_memory_safety(
    scenario: Scenario, available_mb: float | None = None, source: str = "scenario"
) -> dict[str, float]:
    """Refuse a scenario whose peak bubble memory would endanger the machine: one line naming the file
    (``source``), the field whose worst point is too big, and the numbers."""
    lim = scenario.limits
    available = psutil.virtual_memory().available / MIB if available_mb is None else available_mb
    allowed = max(0.0, min(available * lim.max_memory_fraction, available - lim.reserve_mb))
    peak = scenario.peak_bubble_mb()
    facts = {"peak_bubble_mb": peak, "available_mb": available, "allowed_mb": allowed}
    if peak > allowed and not lim.allow_unsafe_memory:
        worst = max(scenario.sweep.values, key=lambda v: sum(size for _, size in scenario.pressure_at(v)))
        count = len(scenario.pressure_at(worst))
        raise UserError(
            f"{source}: sweep.values: refusing to run {scenario.name!r}: peak bubble memory {peak} MiB "
            f"({count} bubbles at {scenario.sweep.axis}={worst}) exceeds the "
            f"safe limit of {allowed:.0f} MiB (the lesser of {lim.max_memory_fraction:.0%} of the {available:.0f} "
            f"MiB available and available minus the {lim.reserve_mb} MiB reserve); shrink the sweep or set "
            f"limits.allow_unsafe_memory: true"
        )
    return facts


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into an exception so every ``finally`` runs and children are stopped."""

    def handler(signum: int, _frame: object) -> None:
        # One signal is enough: ignore repeats so the cleanup it triggers cannot itself be cut short.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Progress:
    """A progress bar on a terminal, one line per point otherwise (CI logs)."""

    def __init__(self, total_steps: int, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True, file=sys.stderr)

    def point(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def step(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.update(1)

    def advance(self, steps: int) -> None:
        if self.bar is not None and steps:
            self.bar.update(steps)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Orchestrator:
    def __init__(self, scenario: Scenario, store: RunStore, progress: bool = True) -> None:
        self.scenario = scenario
        self.store = store
        self.specs = {spec.label: spec for spec in scenario.specs}
        self.steps = {label: steps_of(spec) for label, spec in self.specs.items()}
        # Several workloads are measured one at a time, each in a fresh worker closed before the
        # next starts: their memory is then theirs alone. A single one keeps its worker unless told.
        self.isolated = len(self.specs) > 1
        self.workers: dict[str, WorkerClient] = {}
        self.steps_per_point = sum(len(v) for v in self.steps.values())
        self.progress = Progress(self.steps_per_point * len(store.manifest["plan"]), progress)
        self.started_epoch = float(store.manifest["started_epoch"])
        self.own_session = scenario.placement == "own-session"
        self.budget: Any = None  # bubbleup.pressure.budget.Budget while a device budget is applied

    # -- worker management ----------------------------------------------------
    def _keeps_worker(self, label: str) -> bool:
        return not self.isolated and self.specs[label].restart == "never"

    def _worker(self, label: str) -> WorkerClient:
        """The live worker of ``label``, started and loaded if there is none."""
        client = self.workers.get(label)
        if client is not None and client.alive():
            return client
        self._drop_worker(label)
        spec = self.specs[label]
        client = WorkerClient(self.store.root / "worker.log", own_session=self.own_session, wrap=self._wrap)
        try:
            loaded = client.load(spec.kind, spec.options, self.scenario.limits.load_timeout_s)
        except BaseException:
            client.kill()
            raise
        meta = self.store.manifest.get("workload_metadata") or {}
        if label not in meta:
            meta[label] = {**loaded.get("metadata", {}), "load_s": loaded.get("load_s"),
                           "rss_after_load_mb": loaded.get("rss_mb")}  # fmt: skip
            self.store.update_manifest(workload_metadata=meta)
        self.workers[label] = client
        return client

    def _drop_worker(self, label: str) -> None:
        client = self.workers.pop(label, None)
        if client is not None:
            client.close()

    # -- the sweep ------------------------------------------------------------
    @property
    def _wrap(self) -> Any:
        return self.budget.wrap if self.budget is not None else None

    def _open_budget(self) -> None:
        """One cgroup for the whole run, holding the worker and every bubble (the device's memory)."""
        from bubbleup.pressure.budget import Budget, BudgetSpec, BudgetUnavailable, sweep_stale

        stale = sweep_stale()
        for note in [*(f"stale cgroup still busy: {b}" for b in stale.busy), *stale.errors]:
            self.progress.note(f"warning: {note}")
        spec = BudgetSpec.parse(self.scenario.budget)
        if spec is None:
            return
        budget = Budget.from_spec(spec)
        try:
            budget.apply()
        except BudgetUnavailable as exc:
            raise RunFailed(f"the budget {spec.to_dict()} cannot be applied here: {exc}") from None
        self.budget = budget
        self.store.update_manifest(budget=budget.describe())

    def _oom_kills(self) -> int:
        if self.budget is None:
            return 0
        return int(self.budget.stats().get("oom_kills") or 0)

    def run(self) -> None:
        done = self.store.completed_points()
        todo = [(r, v) for r, v in self.store.manifest["plan"] if (r, v) not in done]
        self.progress.advance(self.steps_per_point * (len(self.store.manifest["plan"]) - len(todo)))
        try:
            self._open_budget()
            for label in self.specs:
                if self._keeps_worker(label):
                    try:
                        self._worker(label)
                    except (WorkerError, WorkerDied, WorkerTimeout) as exc:
                        raise RunFailed(f"{label} could not load with no pressure applied: {exc}") from None
            for repeat, value in todo:
                self._run_point(repeat, value)
        finally:
            for label in list(self.workers):
                self._drop_worker(label)
            if self.budget is not None:
                self.store.update_manifest(budget_final_stats=self.budget.stats())
                self.budget.close()
            self.progress.close()

    def _run_point(self, repeat: int, value: int) -> None:
        sc = self.scenario
        count, size = dict(zip(sc.sweep.values, sc.points(), strict=True))[value]
        self.progress.point(f"repeat {repeat + 1}/{sc.sweep.repeats} {sc.sweep.axis}={value} ({count} x {size} MiB)")
        key = [repeat, sc.sweep.axis, value, count, size]
        sample_rows: list[list[Any]] = []
        point_rows: list[list[Any]] = []
        pool = BubblePool(sc.pressure_at(value), sc.limits.reserve_mb, sc.limits.allow_unsafe_memory, self._wrap)
        sampler = None
        if sc.telemetry.enabled:
            sampler = telemetry.Sampler(sc.telemetry.interval_s, [repeat, value], self.started_epoch,
                                        lambda: {"worker": [w.pid for w in self.workers.values()],
                                                 "bubbles": pool.pids()})  # fmt: skip
            sampler.start()
        try:
            pressure_error = ""
            ooms = self._oom_kills()
            try:
                pool.start()
                pool.wait_ready(sc.limits.ready_timeout_s)
                self._settle(pool)
            except BubbleFailed as exc:
                killed = self._oom_kills() - ooms
                pressure_error = f"pressure not applied: {exc}" + ("; OOM-killed inside the budget" if killed else "")
                self.progress.note(f"  {pressure_error}")
            for label, steps in self.steps.items():
                if not self._keeps_worker(label):
                    self._drop_worker(label)
                for idx, step in enumerate(steps):
                    if pressure_error:
                        status, error, result = STATUS_FAILED, pressure_error, None
                    else:
                        status, error, result = self._run_step(step)
                        if status == STATUS_OK:
                            try:
                                pool.check_alive()
                            except BubbleFailed as exc:
                                status, error = STATUS_FAILED, f"pressure not held: {exc}"
                                pressure_error = error
                    where = [*key, label, idx, step.setting]
                    rows = result.rows if result is not None else []
                    pid = self.workers[label].pid if result is not None else ""
                    sample_rows.extend(self._sample_row(where, r, pid) for r in rows)
                    select_ms = result.select_ms if result is not None else math.nan
                    point_rows.append(self._point_row(where, status, rows, select_ms, pool.resident_mb, error))
                    self.progress.step(f"{label} {step.setting}: {status}")
                if not self._keeps_worker(label):
                    self._drop_worker(label)
        finally:
            pool.stop()
            machine_rows = sampler.stop() if sampler is not None else []
        self.store.append_point(sample_rows, point_rows, machine_rows)

    def _settle(self, pool: BubblePool) -> None:
        deadline = time.monotonic() + self.scenario.sweep.settle_s
        while time.monotonic() < deadline:
            pool.check_alive()
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        pool.check_alive()

    def _run_step(self, step: StepPlan) -> tuple[str, str, StepResult | None]:
        """Run one step; a worker that dies, hangs or cannot load is a recorded outcome, not an exception."""
        ooms = self._oom_kills()
        try:
            worker = self._worker(step.workload)
            result = worker.step(step.setting, step.warmup, step.inferences, self.scenario.limits.step_timeout_s)
            return STATUS_OK, "", result
        except WorkerTimeout as exc:
            self._drop_worker(step.workload)
            return STATUS_TIMEOUT, str(exc), None
        except WorkerDied as exc:
            self._drop_worker(step.workload)
            killed = self._oom_kills() - ooms
            oom = f"; OOM-killed inside the budget ({killed} OOM kill{'s' if killed > 1 else ''})" if killed else ""
            return STATUS_FAILED, f"{exc}{oom}", None
        except WorkerError as exc:
            return STATUS_FAILED, str(exc), None

    def _sample_row(self, where: list[Any], record: list[Any], pid: int | str) -> list[Any]:
        phase, iteration, first_use, latency, rss, t_epoch, info = record
        t_s = round(t_epoch - self.started_epoch, 6)
        return [*where, phase, iteration, first_use, round(latency, 6), round(rss, 3), t_s, pid, info]

    @staticmethod
    def _point_row(where: list[Any], status: str, rows: list[list[Any]], select_ms: float, bubbles_mb: float,
                   error: str) -> list[Any]:  # fmt: skip
        s = {k: round(v, 6) for k, v in stats.summarise([r[3] for r in rows if r[0] == "timed"]).items()}
        rss_max = max((r[4] for r in rows), default=math.nan)
        return [*where, status, s["n"], s["median_ms"], s["ci_low_ms"], s["ci_high_ms"], s["mean_ms"], s["p90_ms"],
                s["p95_ms"], s["p99_ms"], s["min_ms"], s["max_ms"], round(select_ms, 6), rss_max,
                round(bubbles_mb, 3), error.replace("\n", " ")]  # fmt: skip


def new_manifest(scenario: Scenario, given: dict[str, Any]) -> dict[str, Any]:
    env = environment.collect()
    return {
        "name": scenario.name,
        "started_epoch": time.time(),
        "scenario_given": given,
        "scenario_effective": scenario.model_dump(mode="json"),
        "plan": [list(p) for p in plan_points(scenario)],
        "steps": [s.__dict__ for s in all_steps(scenario)],
        "workloads": [spec.label for spec in scenario.specs],
        "settings": list(dict.fromkeys(s.setting for s in all_steps(scenario))),
        "placement": scenario.placement,
        "environment": env,
        "telemetry_columns": telemetry.columns(),
        "environment_warnings": environment.warnings(env),
        "workload_metadata": None,
    }


def calibration_facts(scenario: Scenario, path: Path | None) -> dict[str, Any]:
    """Which calibration this run relies on, and its warnings for the bubble kinds the scenario uses."""
    from bubbleup.machine import calibrate

    cal = calibrate.load(path) if path is not None else None
    if cal is None:
        return {"path": None, "warnings": [], "note": "no calibration found (run 'bubbleup calibrate')"}
    kinds = {b.kind for b in scenario.bubble_set}
    return {"path": str(path), "created_at": cal.get("created_at"), "host": cal.get("host"),
            "warnings": calibrate.warnings_for(cal, kinds)}  # fmt: skip


def run(scenario: Scenario, given: dict[str, Any], out: Path | None, reports_root: Path,
        progress: bool = True, calibration: Path | None = None, source: str = "scenario") -> RunStore:  # fmt: skip
    """Start a new run of ``scenario`` (read from ``source``); returns its store when the sweep has finished."""
    safety = check_memory_safety(scenario, source=source)
    root = out if out is not None else default_run_dir(reports_root, scenario.name)
    manifest = new_manifest(scenario, given)
    manifest["calibration"] = calibration_facts(scenario, calibration)
    manifest["environment_warnings"] += manifest["calibration"]["warnings"]
    store = RunStore.create(root, {**manifest, "memory_safety": safety})
    _execute(scenario, store, progress)
    return store


def resume(run_dir: Path, progress: bool = True) -> RunStore:
    """Continue an interrupted run in place: completed points are kept, the rest are run."""
    store = RunStore.open_for_resume(run_dir)
    source = str(run_dir / "manifest.json")
    scenario = scenario_from_dict(store.manifest["scenario_given"], source)
    check_memory_safety(scenario, source=source)
    store.update_manifest(status="running", resumed_at=[*store.manifest.get("resumed_at", []), now_iso()])
    _execute(scenario, store, progress)
    return store


def _execute(scenario: Scenario, store: RunStore, progress: bool) -> None:
    for w in store.manifest.get("environment_warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print(f"run directory: {store.root}", file=sys.stderr, flush=True)
    try:
        with signals_raise():
            Orchestrator(scenario, store, progress).run()
    except Interrupted:
        store.update_manifest(status="interrupted", finished_at=now_iso())
        raise
    except BaseException:
        store.update_manifest(status="failed", finished_at=now_iso())
        raise
    store.update_manifest(status="complete", finished_at=now_iso())
