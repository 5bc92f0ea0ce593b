"""Named row types of the run directory's CSV files; their field order is the column order.

Everything downstream (analysis, report, compare, users' notebooks) reads these files with
``pandas.read_csv``; the orchestrator builds these records and the writer writes them by name,
so no one indexes a row by position.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypedDict

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_TIMEOUT = "timeout"
#: CPU (cores) used by processes outside the run above which the machine counts as busy: the run warns at its
#: start check, and analysis.validity judges every check and point by it (``machine_busy``).
OUTSIDE_CPU_CORES = 0.25
#: A step's error starts so when its bubbles were not up as the scenario asked (one died, was refused, could not
#: start): no measurement of that pressure was made, and the harness, not the workload, failed ...
PRESSURE_NOT = "pressure not "
#: ... unless the budget's OOM killer took them: on the device the budget stands for, that pressure does not fit
#: beside the workload, which is a result.
BUDGET_OOM = "OOM-killed inside the budget"


def pressure_failed(error: object) -> bool:
    """True when a step's ``error`` says the pressure was not applied for a reason other than the budget's OOM."""
    return isinstance(error, str) and error.startswith(PRESSURE_NOT) and BUDGET_OOM not in error


#: The ``setting`` of an adaptive workload's step: the setting each frame ran is its ``ran_setting``.
ADAPTIVE = "adaptive"


@dataclass(frozen=True, slots=True)
class PointKey:
    """What every row of one point and step shares."""

    repeat: int  # 0-based repeat index
    axis: str  # sweep axis: "count" or "size_mb"
    value: int  # the axis value of this point
    bubble_count: int  # bubbles running during the point
    bubble_size_mb: int  # resident region of each bubble, MiB
    workload: str  # the workload's label (its kind unless the scenario names several)
    step: int  # 0-based index of the setting step within the point
    setting: str  # canonical workload setting name


@dataclass(frozen=True, slots=True)
class SampleRow(PointKey):
    """samples.csv: one inference, warm-ups included (``phase`` says which); the point's key first."""

    phase: str  # "warmup" (untimed in statistics) or "timed"
    iteration: int  # 0-based index within (step, phase)
    sample: int  # which of the setting's samples (frames) it ran on: the workload's samples() index; -1 unknown
    first_use: int  # 1 if this was the first inference of this setting in this worker process
    latency_ms: float  # wall time of infer(), perf_counter_ns, in milliseconds
    rss_mb: float  # worker process RSS right after the inference, MiB
    t_s: float  # seconds since the run started, at the end of the inference
    worker_pid: int | str  # the worker process (a new pid means the worker was restarted)
    #: The setting that ran: the step's, or, in an adaptive step (setting "adaptive"), the one its policy picked.
    ran_setting: str
    level: float  # the contention level (a profile's bubble count) the adaptive policy inferred; NaN otherwise
    #: The pressure in force as the inference started, from the pool's log (bubbles.csv started_s/ready_s/
    #: stopped_s): bubbles ready and not stopping, and whether any was joining or leaving (1) then.
    live_bubbles: int
    transition: int
    schedule_phase: int  # the schedule's phase (0-based) by its clock as the inference started; -1 outside one
    #: The worker's CPU speed probe (bubbleup.machine.speed: thread-CPU ns of a fixed loop) taken last before
    #: this inference; larger is slower. NaN in runs older than it.
    speed_ns: float
    info: str  # JSON of extra facts returned by the workload (e.g. which model answered), or empty


@dataclass(frozen=True, slots=True)
class PointRow(PointKey):
    """points.csv: one point x workload x setting step, its summary statistics and status; the key first."""

    status: str  # ok | failed | timeout
    n: int  # timed inferences
    median_ms: float
    ci_low_ms: float  # 95% CI of the median (analysis.stats.median_ci, the one definition)
    ci_high_ms: float
    mean_ms: float
    p90_ms: float  # nearest-rank percentiles on the timed samples
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    select_ms: float  # time to switch the workload to this setting
    rss_mb_max: float  # worker RSS, max over the step
    bubbles_rss_mb: float  # sum of bubble regions measured resident at ready
    #: why the timed loop ended: count (a fixed number), precision (target reached), cap_inferences or
    #: cap_seconds (a cap came first: flagged when halfwidth is still above target_halfwidth)
    stopped_by: str
    halfwidth: float  # the precision rule's: the IQM's 95% CI half-width / IQM, as the step ended (NaN: count)
    target_halfwidth: float  # the precision asked for (NaN: fixed count)
    cpu_cores: float  # the worker's CPU time (all threads) / wall time over the timed inferences
    #: ``placement: apart`` only (else NaN): one cache line's round trip, in ns, between the worker's first CPU and
    #: the first bubble CPU, timed just before the step (machine.cache_link): a VM's vCPUs move between L3 domains,
    #: and a step timed with them apart saw no cache pressure from the bubbles (analysis.cache_link)
    cpu_link_ns: float
    #: top-1 accuracy over the distinct samples of the timed inferences (analysis.stats.top1), its 95% Wilson
    #: interval and how many distinct samples; NaN / 0 when the workload does not say what is correct
    top1: float
    top1_low: float
    top1_high: float
    top1_n: int
    error: str  # why a point failed, else empty


@dataclass(frozen=True, slots=True)
class BubbleRow:
    """bubbles.csv: one bubble of one point, what it was asked for and what it delivered.

    Targets are the effective kind's; NaN where the kind has none (a rate bubble's CPU is "as
    needed", a duty bubble has no rate). ``region_mb`` is what the bubble measured resident at
    ready; ``region_min_mb`` the lowest it held afterwards, from the telemetry sampler's RSS of
    the bubble (``rss_min_mb``) minus its baseline at ready (NaN without telemetry).
    ``core_share`` / ``mb_per_s`` are what the bubble reported on stop, over its whole loop.
    """

    repeat: int
    value: int
    index: int  # the bubble's index within the point (its CPU under spread/apart placement)
    pid: int
    kind: str
    backend: str
    size_mb: int  # size target: the resident region asked for, MiB
    region_mb: float  # resident region measured by the bubble at ready, MiB
    baseline_mb: float  # the bubble process's RSS before it allocated, MiB
    rss_ready_mb: float  # whole-process RSS at ready, MiB
    rss_min_mb: float  # lowest whole-process RSS the sampler saw after ready, MiB
    region_min_mb: float  # region_mb - (rss_ready_mb - rss_min_mb): the least region held after ready
    rss_samples: int  # sampler readings behind rss_min_mb
    duty: float  # duty target, share of one core (NaN for a rate bubble)
    core_share: float  # delivered: CPU time / wall time of the bubble's loop
    rate_mb_s: float  # rate target (NaN without one)
    mb_per_s: float  # delivered: MiB walked / wall time (NaN where the backend does not tell)
    wall_s: float  # how long the bubble's loop ran
    fault: str  # a fault injected on purpose (tests): empty for every real run
    accesses_per_s: float  # delivered scattered accesses per second (random and mixed walks; else NaN or 0)
    rss_peak_mb: float  # a co-runner's peak resident memory, its whole process tree (NaN for other kinds)
    #: The pool's log, seconds since the run started: spawned, read ready, and its stop begun (NaN: never ready
    #: / still live when the point ended, which then stopped it). A schedule's pressure at any moment is the
    #: bubbles with ready_s <= t < stopped_s.
    started_s: float
    ready_s: float
    stopped_s: float


#: telemetry.csv: one machine sample; keys are the run's telemetry columns (fixed per run in the
#: manifest, since the per-core columns depend on the machine), values numbers or "" when unknown.
TelemetryRow = Mapping[str, float | int | str]


def columns(record_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record_type))


SAMPLE_COLUMNS: tuple[str, ...] = columns(SampleRow)
#: Columns ``load_run`` derives from those on disk (never written): ``correct`` (1 / 0 / NaN) from ``info``.
DERIVED_SAMPLE_COLUMNS: tuple[str, ...] = ("correct",)
POINT_COLUMNS: tuple[str, ...] = columns(PointRow)
#: Columns that hold text; every other column of samples.csv and points.csv is numeric.
SAMPLE_TEXT: tuple[str, ...] = ("axis", "workload", "setting", "phase", "ran_setting", "info")
POINT_TEXT: tuple[str, ...] = ("axis", "workload", "setting", "status", "stopped_by", "error")
BUBBLE_COLUMNS: tuple[str, ...] = columns(BubbleRow)
BUBBLE_TEXT: tuple[str, ...] = ("kind", "backend", "fault")


class KeyFields(TypedDict):
    """:class:`PointKey`'s fields by name, typed, so that ``**key_fields(k)`` is checked like keywords."""

    repeat: int
    axis: str
    value: int
    bubble_count: int
    bubble_size_mb: int
    workload: str
    step: int
    setting: str


def key_fields(key: PointKey) -> KeyFields:
    """The key's fields by name, to start a SampleRow or PointRow from: ``SampleRow(**key_fields(k), ...)``."""
    return KeyFields(repeat=key.repeat, axis=key.axis, value=key.value, bubble_count=key.bubble_count,
                     bubble_size_mb=key.bubble_size_mb, workload=key.workload, step=key.step,
                     setting=key.setting)  # fmt: skip


def as_row(record: SampleRow | PointRow | BubbleRow) -> tuple[Any, ...]:
    """The record's fields in column order. Not ``dataclasses.astuple``, which deep-copies every field: a
    schedule step of 10^5 frames spent 20 s of a 7 s measurement in it."""
    return tuple(getattr(record, name) for name in record.__dataclass_fields__)


def telemetry_row(row: TelemetryRow, cols: tuple[str, ...] | list[str]) -> list[Any]:
    """A telemetry record in the run's column order; a key the run has no column for is a bug, not data."""
    unknown = set(row) - set(cols)
    if unknown:
        raise ValueError(f"telemetry row has keys this run has no column for: {sorted(unknown)}")
    return [row.get(c, "") for c in cols]


def corrects(infos: Iterable[str | None]) -> list[float]:
    """:func:`info_correct` of each info, each distinct one parsed once: a run's infos repeat (``{"correct":true}``),
    and a schedule step times 10^5 frames."""
    known: dict[str | None, float] = {}
    return [known[i] if i in known else known.setdefault(i, info_correct(i)) for i in infos]


def info_correct(info: str | None) -> float:
    """1.0 / 0.0 for an inference whose workload said whether it was right (``{"correct": ...}`` in its
    info), NaN when it did not say."""
    if not info or '"correct"' not in info:
        return math.nan
    try:
        value = json.loads(info).get("correct")
    except (ValueError, AttributeError):
        return math.nan
    return math.nan if value is None else float(bool(value))
