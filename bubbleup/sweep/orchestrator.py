"""The sweep: for each point, bubbles up -> all ready -> settle -> workload runs its steps -> record -> bubbles down.

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

import bisect
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bubbleup.analysis import stats
from bubbleup.errors import BubbleFailed, RunFailed
from bubbleup.formatting import busiest
from bubbleup.machine import cache_link, telemetry
from bubbleup.pressure.placement import allowed_cpus
from bubbleup.pressure.pool import BubblePool
from bubbleup.scenario import Scenario
from bubbleup.store.layout import WORKER_LOG
from bubbleup.store.records import (
    BUDGET_OOM,
    OUTSIDE_CPU_CORES,
    PRESSURE_NOT,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_TIMEOUT,
    PointKey,
    PointRow,
    SampleRow,
    TelemetryRow,
    corrects,
    key_fields,
    pressure_failed,
)
from bubbleup.store.writer import RunWriter
from bubbleup.sweep import evidence, replication, signals
from bubbleup.sweep.facts import cpu_assignment, cpu_demand
from bubbleup.sweep.plan import StepPlan, steps_of
from bubbleup.sweep.progress import Progress
from bubbleup.sweep.worker import InferenceRecord, Precision, StepResult
from bubbleup.sweep.worker_client import WorkerClient, WorkerDied, WorkerError, WorkerTimeout

if TYPE_CHECKING:
    from bubbleup.pressure.budget import Budget


@dataclass
class _StepOutcome:
    """One step as it ended, kept until the point's bubbles are down and it can be summarised."""

    key: PointKey
    status: str
    error: str
    result: StepResult | None
    worker_pid: int | str
    bubbles_mb: float
    target_halfwidth: float  # NaN for a fixed count
    schedule_epoch: float = math.nan  # when a schedule's clock started (the worker's timed loop), else NaN
    cpu_link_ns: float = math.nan  # placement apart: the workload's and the bubbles' CPUs' cache-line round trip


class Orchestrator:
    def __init__(self, scenario: Scenario, store: RunWriter, progress: bool = True) -> None:
        self.scenario = scenario
        self.store = store
        self.specs = {spec.label or spec.kind: spec for spec in scenario.specs}
        self.steps = {label: steps_of(spec) for label, spec in self.specs.items()}
        # Several workloads are measured one at a time, each in a fresh worker closed before the
        # next starts: their memory is then theirs alone. A single one keeps its worker unless told.
        self.isolated = len(self.specs) > 1
        self.workers: dict[str, WorkerClient] = {}
        self.progress = Progress(sum(self._step_count(r, v) for r, v in store.manifest.plan), progress)
        self.started_epoch = store.manifest.started_epoch
        self._phase_starts = scenario.sweep.phase_starts()  # a schedule's phases, seconds after it began
        self.own_session = scenario.placement == "own-session"
        allowed = allowed_cpus()
        self.cpus = cpu_assignment(scenario)
        self.budget: Budget | None = None  # while a device budget is applied
        self._current_repeat: int | None = None  # the repeat whose workers are loaded
        # A run begun before the CPU-accounting columns existed (and resumed now) is sampled without them.
        self.cpu_account = set(telemetry.CPU_ACCOUNT_COLUMNS) <= set(store.manifest.telemetry_columns)
        store.update_manifest(cpu_placement=self.cpus.describe(), cpu_demand=cpu_demand(scenario, len(allowed)))

    # -- worker management ----------------------------------------------------
    def _keeps_worker(self, label: str) -> bool:
        return not self.isolated and self.specs[label].restart in ("never", "per_repeat")

    def _load_workers(self) -> None:
        """Start the workers kept across points now, with no pressure applied: a failure here fails the run."""
        for label in self.specs:
            if self._keeps_worker(label):
                try:
                    self._worker(label)
                except (WorkerError, WorkerDied, WorkerTimeout) as exc:
                    raise RunFailed(f"{label} could not load with no pressure applied: {exc}") from None

    def _worker(self, label: str) -> WorkerClient:
        """The live worker of ``label``, started and loaded if there is none."""
        client = self.workers.get(label)
        if client is not None and client.alive():
            return client
        self._drop_worker(label)
        spec = self.specs[label]
        client = WorkerClient(self.store.root / WORKER_LOG, own_session=self.own_session, wrap=self._wrap,
                              cpus=self.cpus.workload)  # fmt: skip
        adapt = None
        if spec.adapt is not None:
            a = spec.adapt
            adapt = {"profile": self.store.manifest.adapt_profiles[label], "slo_ms": a.slo_ms, "margin": a.margin,
                     "every": a.every, "window": a.window}  # fmt: skip
        try:
            loaded = client.load(spec.kind, spec.options, self.scenario.limits.load_timeout_s, adapt)
        except BaseException:
            client.kill()
            raise
        meta = dict(self.store.manifest.workload_metadata or {})
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
    def _wrap(self) -> Callable[[list[str]], list[str]] | None:
        return self.budget.wrap if self.budget is not None else None

    def _open_budget(self) -> None:
        """One cgroup for the whole run, holding the worker and every bubble (the device's memory)."""
        from bubbleup.pressure.budget import Budget, BudgetUnavailable
        from bubbleup.pressure.budget_spec import BudgetSpec
        from bubbleup.pressure.stale import sweep_stale

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

    def _check_machine(self, account: telemetry.CpuAccount, census: dict[int, tuple[str, float]]) -> None:
        """Before the first point: is someone else using the CPUs? (validity's ``machine_busy_start``) The
        window opened before the workers loaded: their CPU is the run's, so loading overlaps the check. The
        ``census`` taken then lets the check name who else was busy."""
        check: dict[str, Any] = telemetry.outside_cpu(account, self.scenario.limits.start_check_s, census)
        resumes = len(self.store.manifest.resumed_at)
        check["when"] = f"at resume {resumes}" if resumes else "before the first point"
        self.store.update_manifest(machine_checks=[*self.store.manifest.machine_checks, check])
        if check["outside_cpu_cores"] > OUTSIDE_CPU_CORES:
            self.progress.note(f"warning: the machine is busy: other processes use {check['outside_cpu_cores']:.2f} "
                               f"cores (more than {OUTSIDE_CPU_CORES}){busiest(check.get('busiest'))}; this run "
                               "will be INVALID")  # fmt: skip

    def run(self) -> None:
        done = self.store.completed_points()
        plan = self.store.manifest.plan
        todo = [(r, v) for r, v in plan if (r, v) not in done]
        self.progress.advance(sum(self._step_count(r, v) for r, v in plan if (r, v) in done))
        try:
            pending = todo or self._more_repeats()
            if not pending:  # killed after its last point landed: nothing to measure, so no start check to judge
                return
            account, census = telemetry.CpuAccount(lambda: [os.getpid()]), telemetry.process_census()
            self._open_budget()
            self._load_workers()
            self._check_machine(account, census)
            self._current_repeat = pending[0][0]
            self._run_points(pending)
            while extra := self._more_repeats():
                self._run_points(extra)
        except BaseException:
            # Stopping early (a signal, a failed write): a busy worker would not answer a polite close
            # before its step ends, so it is killed now, by PID; an unfinished step is never recorded.
            for label in list(self.workers):
                self.workers.pop(label).kill()
            raise
        finally:
            try:
                for label in list(self.workers):
                    self._drop_worker(label)
                if self.budget is not None:
                    final = self.budget.stats()
                    self.budget.close()
                    self.store.update_manifest(budget_final_stats=final)
            finally:
                self.progress.close()  # a budget that cannot be removed still leaves the terminal tidy

    def _run_points(self, points: list[tuple[int, int]]) -> None:
        for repeat, value in points:
            if repeat != self._current_repeat:  # a new repeat: per_repeat workers are replaced before its bubbles
                self._current_repeat = repeat
                for label, spec in self.specs.items():
                    if spec.restart == "per_repeat":
                        self._drop_worker(label)
                self._load_workers()
            self._run_point(repeat, value)

    def _more_repeats(self) -> list[tuple[int, int]]:
        """sweep.replication's next round (:func:`replication.next_round`), in the manifest's plan before it runs,
        so a resumed run finishes it; [] when there is none."""
        sweep, m = self.scenario.sweep, self.store.manifest
        rule = sweep.replication
        if rule is None:
            return []
        extra, entry, note = replication.next_round(replication.read_samples(self.store.root), m.plan,
                                                    m.replication, rule, sweep.order, sweep.seed)  # fmt: skip
        if extra or not m.replication or m.replication[-1] != entry:  # a resume that finds the same end adds none
            self.store.update_manifest(plan=[*m.plan, *extra], replication=[*m.replication, entry])
        if extra:
            self.progress.grow(sum(self._step_count(r, v) for r, v in extra))
            self.progress.note(note)
        return extra

    def _steps_at(self, repeat: int, value: int) -> dict[str, list[tuple[int, StepPlan]]]:
        """The steps a point runs, per workload, with their index in the workload's steps: all of them, or in
        an extra repeat only those its replication round lists (:meth:`Manifest.round_steps`)."""
        listed = self.store.manifest.round_steps(repeat)
        return {label: [(i, st) for i, st in enumerate(steps)
                        if listed is None or (value, label, st.setting) in listed]
                for label, steps in self.steps.items()}  # fmt: skip

    def _step_count(self, repeat: int, value: int) -> int:
        return sum(len(steps) for steps in self._steps_at(repeat, value).values())

    def _run_point(self, repeat: int, value: int) -> None:
        sc = self.scenario
        count, size = dict(zip(sc.sweep.values, sc.points(), strict=True))[value]
        where = (f"a schedule of {len(sc.sweep.phases or [])} phases, {sc.sweep.schedule_s:g} s per step, up to"
                 if sc.sweep.axis == "schedule" else f"{sc.sweep.axis}={value}")  # fmt: skip
        rule = sc.sweep.replication
        # an extra round's number may pass max_repeats: each step counts its own repeats to it, not the rounds
        which = (f"repeat {repeat + 1} (extra: steps that disagree, to {rule.max_repeats} repeats each)"
                 if rule is not None and repeat >= sc.sweep.repeats else f"repeat {repeat + 1}/{sc.sweep.repeats}")
        self.progress.point(f"{which} {where} ({count} x {size} MiB)")
        outcomes: list[_StepOutcome] = []
        schedule = sc.sweep.axis == "schedule"  # bubbles come and go within each step, not before the point
        pool = BubblePool(sc.pressure_at(value), sc.limits.reserve_mb, sc.limits.allow_unsafe_memory, self._wrap,
                          cpus=self.cpus.for_bubble, max_memory_fraction=sc.limits.max_memory_fraction)  # fmt: skip
        sampler = None
        if sc.telemetry.enabled:
            # the sampler's thread reads the workers while the sweep starts and drops them: a copy (made in one
            # step under the GIL), never the live dict
            sampler = telemetry.Sampler(sc.telemetry.interval_s, {"repeat": repeat, "value": value},
                                        self.started_epoch,
                                        lambda: {"worker": [w.pid for w in list(self.workers.values())],
                                                 "bubbles": pool.pids(), "run": [os.getpid()]},
                                        cpu_account=self.cpu_account)  # fmt: skip
            sampler.start()
        try:
            pressure_error = ""
            ooms = self._oom_kills()
            try:
                if not schedule:
                    pool.start()
                    pool.wait_ready(sc.limits.ready_timeout_s)
                    self._settle(pool)
            except BubbleFailed as exc:
                killed = self._oom_kills() - ooms
                pressure_error = f"{PRESSURE_NOT}applied: {exc}" + (f"; {BUDGET_OOM}" if killed else "")
                self.progress.note(f"  {pressure_error}")
            for label, steps in self._steps_at(repeat, value).items():
                if not steps:
                    continue
                if not self._keeps_worker(label):
                    self._drop_worker(label)
                for idx, step in steps:
                    t0, link = math.nan, math.nan
                    if pressure_error:
                        status, error, result = STATUS_FAILED, pressure_error, None
                    elif schedule:
                        status, error, result, t0 = self._run_schedule_step(step, pool)
                        if error.startswith(PRESSURE_NOT):
                            pressure_error = error
                    else:
                        link = self._cache_link()
                        status, error, result = self._run_step(step)
                        if status == STATUS_OK:
                            try:
                                pool.check_alive()
                            except BubbleFailed as exc:
                                status, error = STATUS_FAILED, f"{PRESSURE_NOT}held: {exc}"
                                pressure_error = error
                    key = PointKey(repeat, sc.sweep.axis, value, count, size, label, idx, step.setting)
                    pid: int | str = self.workers[label].pid if result is not None else ""
                    target = step.precision.target if step.precision is not None else math.nan
                    outcomes.append(_StepOutcome(key, status, error, result, pid, pool.resident_mb, target, t0,
                                                 link))  # fmt: skip
                    self.progress.step(f"{label} {step.setting}: {status}")
                if not self._keeps_worker(label):
                    self._drop_worker(label)
        except BaseException:
            with signals.held(then_raise=False):  # the bubbles stop whatever else arrives
                self._stop_point(pool, sampler)
            raise
        with signals.held():  # a signal now waits for the point's rows: every step of it was measured
            stopping, delivered, machine_rows = self._stop_point(pool, sampler)
            bubbles = evidence.bubble_rows(repeat, value, pool, delivered, sampler, stopping, self.started_epoch)
            # Statistics only now, with the bubbles down: nothing heavy runs while pressure is applied.
            samples = [self._sample_row(o, r, pool) for o in outcomes for r in self._records(o)]
            points = [self._point_row(o) for o in outcomes]
            self.store.append_point(samples, points, machine_rows, bubbles)
            if sampler is not None:
                self._record_if_busy(repeat, value, sampler.busiest)
        if sc.limits.stop_on_pressure_failure and pressure_failed(pressure_error):
            raise RunFailed(f"{pressure_error} (limits.stop_on_pressure_failure: the run stops here)")

    @staticmethod
    def _stop_point(pool: BubblePool, sampler: telemetry.Sampler | None) -> tuple[float, list[dict[str, Any]],
                                                                                    list[TelemetryRow]]:  # fmt: skip
        """Stop the point's bubbles, then its sampler: (when the stop began: bubbles' RSS after it is their exit, not
        a miss; what each bubble said it delivered; the sampler's rows)."""
        stopping = time.time()
        delivered = pool.stop()
        return stopping, delivered, sampler.stop() if sampler is not None else []

    def _record_if_busy(self, repeat: int, value: int, who: list[dict[str, Any]]) -> None:
        """Who else used the CPU during a point (0.05 cores or more) goes into the manifest, so that validity can
        name them for a point it finds busy (after the point's rows: a resumed point replaces its entry)."""
        if not who:
            return
        kept = [p for p in self.store.manifest.busy_points if (p.get("repeat"), p.get("value")) != (repeat, value)]
        self.store.update_manifest(busy_points=[*kept, {"repeat": repeat, "value": value, "busiest": who}])

    @staticmethod
    def _records(outcome: _StepOutcome) -> list[InferenceRecord]:
        return outcome.result.records if outcome.result is not None else []

    def _settle(self, pool: BubblePool) -> None:
        """Hold the point for ``settle_s`` once every bubble is ready, failing fast if one dies meanwhile."""
        deadline = time.monotonic() + self.scenario.sweep.settle_s
        while time.monotonic() < deadline:
            pool.check_alive()
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        pool.check_alive()

    def _run_schedule_step(self, step: StepPlan, pool: BubblePool) -> tuple[str, str, StepResult | None, float]:
        """One step through the whole schedule: phase 0's bubbles up and ready and settled, then the worker times
        for the schedule's length while the bubbles follow the phases by its clock (joiners ready-gated, the
        frames meanwhile kept and marked). Returns the outcome and when the schedule's clock started."""
        sc = self.scenario
        phases, per_set = sc.sweep.phases or [], len(sc.bubble_set)
        try:
            pool.resize(phases[0].bubbles * per_set)
            pool.wait_ready(sc.limits.ready_timeout_s)
            self._settle(pool)
        except BubbleFailed as exc:
            return STATUS_FAILED, f"{PRESSURE_NOT}applied: {exc}", None, math.nan
        clock = [math.nan]  # the schedule's start on the worker's clock, once its timed loop has begun

        def through_the_schedule(worker: WorkerClient) -> tuple[StepResult, str]:
            timeout = sc.limits.step_timeout_s
            worker.begin_step(step.setting, step.warmup, step.inferences, None, sc.sweep.schedule_s)
            clock[0] = t0 = worker.await_timing(timeout)
            error = ""
            for k in range(1, len(phases)):
                try:
                    if not self._hold_until(t0 + self._phase_starts[k], pool, worker):
                        break  # the worker died: end_step says how
                    pool.resize(phases[k].bubbles * per_set)
                    pool.wait_ready(sc.limits.ready_timeout_s)
                except BubbleFailed as exc:
                    error = f"{PRESSURE_NOT}applied in phase {k}: {exc}"
                    break
            return worker.end_step(timeout), error

        status, error, result = self._run_step(step, through_the_schedule)
        return status, error, result, clock[0]

    def _cache_link(self) -> float:
        """Under ``placement: apart``, whether the workload's CPUs share an L3 with the bubbles' at this moment, as
        one cache line's round trip between the first of each (``cache_link``, ~70 ms); NaN under other placements."""
        c = self.cpus
        if c.placement != "apart" or not c.workload or not c.bubble_cpus:
            return math.nan
        return cache_link.round_trip_ns(c.workload[0], c.bubble_cpus[0])

    @staticmethod
    def _hold_until(epoch: float, pool: BubblePool, worker: WorkerClient) -> bool:
        """Keep the current phase until ``epoch`` (wall clock, the worker's schedule clock); False as soon as the
        worker has died, BubbleFailed as soon as a bubble has."""
        while time.time() < epoch:
            pool.check_alive()
            if not worker.alive():
                return False
            time.sleep(min(0.05, max(0.0, epoch - time.time())))
        pool.check_alive()
        return True

    def _run_step(self, step: StepPlan, drive: Callable[[WorkerClient], tuple[StepResult, str]] | None = None,
                  ) -> tuple[str, str, StepResult | None]:  # fmt: skip
        """Run one step (``drive`` runs it on the worker when it is more than one step command, as a schedule's
        is; its error string fails the step); a worker that dies, hangs or cannot load is a recorded outcome,
        not an exception."""
        ooms = self._oom_kills()
        try:
            worker = self._worker(step.workload)
            if drive is not None:
                result, error = drive(worker)
                return (STATUS_FAILED if error else STATUS_OK), error, result
            p = step.precision
            precision = None
            if p is not None:
                assert p.batch_ms is not None  # scenario._resolve_precision fills it
                precision = Precision(p.target, p.min_seconds, p.max_inferences, p.max_seconds, p.batch_ms / 1000)
            result = worker.step(step.setting, step.warmup, step.inferences, self.scenario.limits.step_timeout_s,
                                 precision)  # fmt: skip
            return STATUS_OK, "", result
        except WorkerTimeout as exc:
            self._drop_worker(step.workload)
            return STATUS_TIMEOUT, str(exc), None
        except WorkerDied as exc:
            self._drop_worker(step.workload)
            killed = self._oom_kills() - ooms
            oom = f"; {BUDGET_OOM} ({killed} OOM kill{'s' if killed > 1 else ''})" if killed else ""
            return STATUS_FAILED, f"{exc}{oom}", None
        except WorkerError as exc:
            return STATUS_FAILED, str(exc), None

    def _sample_row(self, o: _StepOutcome, r: InferenceRecord, pool: BubblePool) -> SampleRow:
        start = r.t_epoch_s - r.latency_ms / 1e3
        live, moving = pool.pressure_at(start)
        phase = -1
        if r.phase == "timed" and not math.isnan(o.schedule_epoch):
            phase = max(0, bisect.bisect_right(self._phase_starts, start - o.schedule_epoch) - 1)
        return SampleRow(
            **key_fields(o.key), phase=r.phase, iteration=r.iteration, sample=r.sample, first_use=r.first_use,
            latency_ms=round(r.latency_ms, 6), rss_mb=round(r.rss_mb, 3),
            t_s=round(r.t_epoch_s - self.started_epoch, 6), worker_pid=o.worker_pid, ran_setting=r.ran_setting,
            level=r.level, live_bubbles=live, transition=int(moving), schedule_phase=phase,
            speed_ns=round(r.speed_ns), info=r.info,
        )  # fmt: skip

    def _point_row(self, o: _StepOutcome) -> PointRow:
        records = self._records(o)
        d = stats.describe([r.latency_ms for r in records if r.phase == "timed"])
        s = {k: round(float(d[k]), 6) for k in ("median_ms", "ci_low_ms", "ci_high_ms", "mean_ms", "p90_ms",
                                                  "p95_ms", "p99_ms", "min_ms", "max_ms")}  # fmt: skip
        select_ms = o.result.select_ms if o.result is not None else math.nan
        timed = [r for r in records if r.phase == "timed"]
        acc = stats.top1([r.sample for r in timed], corrects(r.info for r in timed))
        return PointRow(
            **key_fields(o.key), status=o.status, n=int(d["n"]), **s, select_ms=round(select_ms, 6),
            rss_mb_max=max((r.rss_mb for r in records), default=math.nan), bubbles_rss_mb=round(o.bubbles_mb, 3),
            stopped_by=o.result.stopped_by if o.result is not None else "",
            halfwidth=round(o.result.halfwidth, 6) if o.result is not None else math.nan,
            target_halfwidth=o.target_halfwidth,
            cpu_cores=round(o.result.cpu_cores, 4) if o.result is not None else math.nan,
            cpu_link_ns=round(o.cpu_link_ns, 1),
            top1=round(acc["top1"], 6), top1_low=round(acc["top1_low"], 6), top1_high=round(acc["top1_high"], 6),
            top1_n=int(acc["top1_n"]),
            error=o.error.replace("\n", " "),
        )  # fmt: skip
