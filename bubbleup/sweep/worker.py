"""The workload worker: one process that loads a workload and times every inference.

As in pyperf, measuring happens in a process of its own and results come back
over a pipe as JSON. The worker, not the workload, owns the timer
(``perf_counter_ns`` around ``infer`` and nothing else), reads its own RSS after
every inference and marks the first use of each setting, so switching costs are
data rather than noise.

Protocol (JSON lines; commands on stdin, replies on the worker's original stdout,
which is moved away from fd 1 so a chatty workload cannot corrupt it)::

    -> {"cmd": "load", "kind": K, "options": {...}, "adapt": null | {"profile", "slo_ms", ...}}
    <- {"event": "loaded", "load_s", "rss_mb", "settings", "metadata"}
    -> {"cmd": "step", "setting": S, "warmup": W, "n": N, "precision": null | {...}, "seconds": null | T}
    <- {"event": "timing", "t_epoch_s"}          (as the timed loop begins)
    <- {"event": "step", "select_ms", "stopped_by", "halfwidth", "columns": InferenceRecord._fields,
        "rows": [[...], ...]}

With ``precision`` (:class:`Precision`'s fields), N is the minimum: timing goes on until the
IQM's CI (by batch means) is narrow enough or a cap is reached, and ``stopped_by`` says which.
    -> {"cmd": "close"}
    <- {"event": "closed"}

Any exception comes back as ``{"event": "error", "message", "traceback"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

import psutil

from bubbleup.analysis.stats import batch_halfwidth
from bubbleup.machine import speed as cpu_speed
from bubbleup.sweep.adaptive import ADAPTIVE, Policy, policy_from
from workloads.base import Workload

MIB = 1 << 20
PROBE_EVERY_NS = int(cpu_speed.EVERY_S * 1e9)


class InferenceRecord(NamedTuple):
    """One timed call of ``infer``, as the worker measured it; sent as a row under its field names."""

    phase: str  # "warmup" or "timed"
    iteration: int  # 0-based within (step, phase)
    sample: int  # which of the setting's samples it ran on (index into samples())
    first_use: int  # 1 for the first inference of a setting in this process
    latency_ms: float  # perf_counter_ns around infer() (and, on an adaptive frame that switched, the switch)
    rss_mb: float  # this process's RSS right after the inference
    t_epoch_s: float  # wall clock at the end of the inference
    ran_setting: str  # the setting that ran: the step's, or the one an adaptive policy picked
    level: float  # the contention level an adaptive policy inferred when it picked ran_setting (NaN otherwise)
    info: str  # JSON of what the workload returned, or ""
    speed_ns: float  # the CPU speed probe (machine.speed) taken last before this inference; larger is slower


#: Why a step's timed loop ended: a fixed count, the precision reached, a cap without it, or its duration
#: (a schedule's step lasts the schedule).
STOP_COUNT, STOP_PRECISION, STOP_CAP_N, STOP_CAP_S = "count", "precision", "cap_inferences", "cap_seconds"
STOP_DURATION = "duration"


class Precision(NamedTuple):
    """LoadGen-style stopping: at least the step's count and ``min_seconds``, then until the IQM's 95% CI
    half-width (batch means over ``batch_s``: stats.batch_halfwidth) is within ``target`` of the IQM, or
    ``max_inferences`` / ``max_seconds``."""

    target: float
    min_seconds: float
    max_inferences: int
    max_seconds: float
    batch_s: float


#: Precision is checked when the timed count has grown by this factor since the last check, not after
#: every inference: each look at a sequential CI is a chance to stop on a lucky draw (optional
#: stopping), and looks spaced geometrically keep their number logarithmic in the sample count.
CHECK_GROWTH = 1.1


@dataclass
class StepResult:
    setting: str
    select_ms: float
    records: list[InferenceRecord] = field(default_factory=list)
    stopped_by: str = STOP_COUNT
    halfwidth: float = float("nan")  # under a precision rule: its IQM CI half-width / IQM when the loop ended
    cpu_cores: float = float("nan")  # this process's CPU time (every thread) / wall time over the timed loop

    def latencies(self, phase: str = "timed") -> list[float]:
        return [r.latency_ms for r in self.records if r.phase == phase]


class Runner:
    """Drives one workload in this process: the timed loop lives here and only here."""

    def __init__(self, workload: Workload, policy: Policy | None = None) -> None:
        self.workload = workload
        #: Picks the setting of every frame of an ``adaptive`` step (sweep.adaptive); None: not adaptive.
        self.policy = policy
        self.used: set[str] = set()
        self._rss = psutil.Process().memory_info  # bound once: read after every inference
        self._current: str | None = None
        #: Per setting, the next sample to run: each step goes on where the last one of the setting left off,
        #: so a run's points see the whole sample set, not its first few samples again and again.
        self._cursor: dict[str, int] = {}

    def _select(self, setting: str) -> None:
        if setting != self._current:
            self.workload.select(setting)
            self._current = setting

    def step(self, setting: str, warmup: int, n: int, precision: Precision | None = None,
             seconds: float | None = None, on_timing: Callable[[], None] | None = None) -> StepResult:  # fmt: skip
        """Select ``setting``, run ``warmup`` then ``n`` inferences (at least ``n`` under ``precision``; for
        ``seconds`` if given, however many that is), return one record per inference. ``on_timing`` is called
        as the timed loop begins (a schedule's clock starts then).

        ``setting`` ``adaptive`` lets the policy pick every frame's setting; its warm-up runs ``warmup``
        inferences at each candidate (an adaptive network keeps every branch ready), so timed frames pay a
        switch's cost, not a first use's."""
        w, policy = self.workload, self.policy if setting == ADAPTIVE else None
        if setting == ADAPTIVE and policy is None:
            raise RuntimeError("an adaptive step needs the workload loaded with an adapt profile")
        perf = time.perf_counter_ns
        current = policy.setting if policy is not None else setting
        t0 = perf()
        self._select(current)
        result = StepResult(setting, (perf() - t0) / 1e6)
        speed, probed = cpu_speed.probe_ns(), perf()
        records, rss, infer, nan = result.records, self._rss, w.infer, float("nan")
        warm = [s for s in policy.profile.settings if s != current] + [current] if policy is not None else [current]
        offset = self._cursor.get(setting, 0)
        i = 0  # inferences so far, warm-ups included: the sample cursor moves with it
        for s in warm:
            self._select(s)
            samples = w.samples()
            if not samples:
                raise RuntimeError(f"workload returned no samples for setting {s!r}")
            for _ in range(warmup):
                index = (offset + i) % len(samples)
                first = s not in self.used
                self.used.add(s)
                start = perf()
                info = infer(samples[index])
                latency = (perf() - start) / 1e6
                records.append(InferenceRecord("warmup", i, index, int(first), latency, rss().rss / MIB, time.time(),
                                               s, nan, _info(info), speed))  # fmt: skip
                i += 1
        self._select(current)
        samples = w.samples()
        timed: list[float] = []  # timed latencies and their end times (s, monotonic), in order: the precision rule's
        ends: list[float] = []
        limit = precision.max_inferences if precision is not None else (sys.maxsize if seconds is not None else n)
        next_check, j = n, 0
        if on_timing is not None:
            on_timing()
        speed, probed = cpu_speed.probe_ns(), perf()
        t_timed, cpu_timed = perf(), _cpu_s()
        while j < limit:
            level = policy.level_value if policy is not None else nan
            start = perf()
            if start - probed >= PROBE_EVERY_NS:  # between inferences, never inside one
                speed, start = cpu_speed.probe_ns(), perf()
                probed = start
            switched = policy is not None and policy.setting != current
            if switched:
                assert policy is not None
                current = policy.setting
                self._select(current)
                samples = w.samples()
            index = (offset + i) % len(samples)
            info = infer(samples[index])
            end = perf()
            latency = (end - start) / 1e6
            first = current not in self.used
            self.used.add(current)
            records.append(InferenceRecord("timed", j, index, int(first), latency, rss().rss / MIB, time.time(),
                                           current, level, _info(info), speed))  # fmt: skip
            i, j = i + 1, j + 1
            if policy is not None:
                policy.observe(latency, switched or first)
            timed.append(latency)
            ends.append(end / 1e9)
            elapsed = (perf() - t_timed) / 1e9
            if seconds is not None:
                if elapsed >= seconds:
                    result.stopped_by = STOP_DURATION
                    break
                continue
            if precision is None:
                continue
            if j >= next_check and elapsed >= precision.min_seconds:
                next_check = max(j + 1, int(j * CHECK_GROWTH))
                if batch_halfwidth(timed, ends, precision.batch_s) <= precision.target:
                    result.stopped_by = STOP_PRECISION
                    break
            if elapsed >= precision.max_seconds and j >= n:
                result.stopped_by = STOP_CAP_S
                break
        else:
            if precision is not None:
                result.stopped_by = STOP_CAP_N
        self._cursor[setting] = (offset + i) % len(samples)
        wall_s = (perf() - t_timed) / 1e9
        result.cpu_cores = (_cpu_s() - cpu_timed) / wall_s if timed and wall_s > 0 else float("nan")
        if precision is not None:
            result.halfwidth = batch_halfwidth(timed, ends, precision.batch_s)
            if result.stopped_by != STOP_PRECISION and result.halfwidth <= precision.target:
                result.stopped_by = STOP_PRECISION  # the cap's last inference brought the precision
        return result


def _cpu_s() -> float:
    """User + system CPU seconds of this process, every thread (a TF session's intra-op pool included).

    ``time.process_time`` reads CLOCK_PROCESS_CPUTIME_ID, nanosecond-resolved; ``os.times`` counts clock
    ticks (10 ms), which reads 0 for a timed loop of a few milliseconds of work.
    """
    return time.process_time()


def _info(info: Any) -> str:
    if not info:
        return ""
    return json.dumps(info, separators=(",", ":"), default=str)


def load_workload(kind: str, options: dict[str, Any], in_worker: bool = False) -> Workload:
    """The workload, constructed; ``in_worker``: this process is a worker, whose process tree a workload that
    starts programs owns (``workloads.lifetime``)."""
    from workloads import get_workload_class

    cls = get_workload_class(kind)
    if in_worker and cls.starts_programs:
        from workloads import lifetime

        lifetime.own_process_tree()
    return cls(cls.Options.model_validate(options))


def serve(commands: IO[str], replies: IO[str]) -> int:
    """The worker's main loop: answer commands until 'close' or end of input."""
    runner: Runner | None = None

    def reply(event: str, **fields: Any) -> None:
        replies.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        replies.flush()

    for line in commands:
        if not line.strip():
            continue
        msg = json.loads(line)
        cmd = msg.get("cmd")
        try:
            if cmd == "load":
                t0 = time.perf_counter()
                workload = load_workload(msg["kind"], msg.get("options", {}), in_worker=True)
                workload.load()
                adapt = msg.get("adapt")
                runner = Runner(workload, policy_from(adapt) if adapt else None)
                reply(
                    "loaded",
                    load_s=time.perf_counter() - t0,
                    rss_mb=psutil.Process().memory_info().rss / MIB,
                    settings=workload.settings(),
                    metadata=workload.metadata(),
                    pid=os.getpid(),
                )
            elif cmd == "step":
                if runner is None:
                    raise RuntimeError("step before load")
                given = msg.get("precision")
                precision = Precision(**given) if given else None
                seconds = msg.get("seconds")
                res = runner.step(msg["setting"], int(msg["warmup"]), int(msg["n"]), precision,
                                  float(seconds) if seconds is not None else None,
                                  lambda: reply("timing", t_epoch_s=time.time()))  # fmt: skip
                reply("step", setting=res.setting, select_ms=res.select_ms, stopped_by=res.stopped_by,
                      halfwidth=res.halfwidth, cpu_cores=res.cpu_cores, columns=InferenceRecord._fields,
                      rows=res.records)  # fmt: skip
            elif cmd == "close":
                if runner is not None:
                    runner.workload.close()
                reply("closed")
                return 0
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as exc:  # reported to the orchestrator, which decides what it means
            reply("error", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bubbleup.sweep.worker", description="bubbleup worker (internal)")
    p.add_argument("--parent-pid", type=int, default=None)
    args = p.parse_args(argv)
    from bubbleup.procs import die_with_parent

    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    # Keep the protocol channel private: whatever the workload prints goes to stderr (the log).
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(sys.stdin, replies)


if __name__ == "__main__":
    sys.exit(main())
