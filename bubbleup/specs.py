"""The parts of a scenario, one frozen pydantic model per field (``workload``, ``bubble``, ``sweep``, ``limits``,
...); :mod:`bubbleup.scenario` puts them together, resolves them and reports problems in one line.

Unknown keys are errors, not silently ignored (``_Strict``): a typo in a benchmark config otherwise
produces a plausible-looking wrong result.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)


def _reject_text_and_bool(value: Any) -> Any:
    # YAML gives us real numbers; a quoted "5" or a `true` where a number belongs is a mistake.
    if isinstance(value, (str, bool)):
        hint = ""
        number = re.fullmatch(r"([+-]?\d+)(\.\d*)?[eE]([+-]?)(\d+)", value.strip()) if isinstance(value, str) else None
        if number:  # YAML 1.1 (PyYAML) reads a number in this form only with a dot and a signed exponent
            whole, frac, sign, exp = number.groups()
            hint = f" (YAML reads {value} as text: write {whole}{frac or '.0'}e{sign or '+'}{exp})"
        raise ValueError(f"expected a number, got {type(value).__name__} {value!r}{hint}")
    return value


Int = Annotated[int, BeforeValidator(_reject_text_and_bool)]
Float = Annotated[float, BeforeValidator(_reject_text_and_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Step(_Strict):
    """One explicit step of a workload schedule, e.g. "LL for 100 inferences"."""

    setting: StrictStr
    inferences: Int = Field(ge=1, le=1_000_000)
    #: Left out: the workload's ``warmup``.
    warmup: Int | None = Field(default=None, ge=0, le=100_000)


class PrecisionSpec(_Strict):
    """Samples chosen by precision (MLPerf LoadGen's minimum count and duration as the floor): each
    step times at least its ``inferences`` and ``min_seconds``, then goes on until the 95% CI of its
    interquartile mean (by batch means, ``batch_ms``) has a half-width within ``target`` of the IQM, or a
    cap is reached (recorded, and flagged)."""

    #: Wanted CI half-width as a share of the IQM (0.05: the IQM is known to within 5%).
    target: Float = Field(default=0.05, gt=0.0, lt=1.0)
    min_seconds: Float = Field(default=0.0, ge=0.0, le=3600.0)
    #: ... and at least this many periods of the bubbles' duty cycle (``bubble.period_ms``, when a bubble
    #: burns part of a core): a step shorter than a period sees the bubble on or off, not its duty, and its
    #: samples agree with each other however far the step is from the point's truth. The effective
    #: ``min_seconds`` is the larger of the two (recorded in the manifest's effective scenario).
    min_periods: Int = Field(default=10, ge=0, le=100_000)
    #: The batches the CI is computed over (stats.batch_halfwidth), in ms: left out, the longest duty period
    #: among the bubbles (``bubble.period_ms``, 50 by default), so a batch sees a bubble's whole on and off;
    #: 0 (the default when no bubble is duty-cycled): every sample is a batch of its own.
    batch_ms: Float | None = Field(default=None, ge=0.0, le=600_000.0)
    max_inferences: Int = Field(default=1000, ge=1, le=1_000_000)
    max_seconds: Float = Field(default=10.0, gt=0.0, le=3600.0)


class AdaptSpec(_Strict):
    """Run-time adaptation (ApproxDet's scheduler): the workload picks its setting every ``every`` frames from
    a measured ``profile`` (a run directory of the same workload, e.g. the main job's) and its own recent
    latencies. The contention level is inferred by matching the median of the last ``window`` frames against
    the profile (the sensor); the setting is then the most accurate one whose profiled latency at
    ``percentile`` is within ``slo_ms / margin`` at that level, the fastest when none is (``recommend``'s rule).
    The workload's ``settings`` are the candidates."""

    profile: StrictStr = Field(min_length=1)
    slo_ms: Float = Field(gt=0.0, le=3_600_000.0)
    percentile: Literal[50, 90, 95, 99] = 50
    margin: Float = Field(default=1.3, ge=1.0, le=100.0)
    #: Frames between two decisions.
    every: Int = Field(default=4, ge=1, le=100_000)
    #: Recent frames (at the current setting) the sensor takes the median of.
    window: Int = Field(default=8, ge=1, le=100_000)


class WorkloadSpec(_Strict):
    """What is measured. ``options`` are validated by the workload kind's own Options model."""

    kind: StrictStr
    #: Names this workload in results when a scenario compares several (default: its kind).
    label: str | None = Field(default=None, pattern=r"^[^,\n]{1,60}$")
    #: Setting names or preset aliases to run at every point, or "all".
    settings: list[StrictStr] | Literal["all"] = "all"
    inferences_per_setting: Int = Field(default=50, ge=1, le=1_000_000)
    #: Untimed inferences before each setting's timed ones (recorded, marked "warmup").
    warmup: Int = Field(default=5, ge=0, le=100_000)
    #: An explicit schedule instead of settings x inferences_per_setting (e.g. LL, MM, HH, LL...).
    steps: list[Step] | None = None
    #: "never": one worker for the whole sweep (loaded once, before any bubble);
    #: "per_repeat": a fresh worker for every repeat, loaded before the repeat's first bubble, so that
    #: repeats are independent processes (memory layout, thread placement), the replicates compare needs;
    #: "per_point": a fresh worker process at every point (load and first use under pressure).
    restart: Literal["never", "per_repeat", "per_point"] = "never"
    #: Time each step until its IQM is this precise (the step's inferences are then the minimum);
    #: omitted: exactly the step's inferences, as an explicit schedule of fixed counts needs.
    precision: PrecisionSpec | None = None
    #: Pick the setting at run time from a measured profile (one step, setting ``adaptive``, per point).
    adapt: AdaptSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("settings")
    @classmethod
    def _non_empty(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, list) and not v:
            raise ValueError("must name at least one setting, or be 'all'")
        return v

    @field_validator("steps")
    @classmethod
    def _steps_non_empty(cls, v: list[Step] | None) -> list[Step] | None:
        if v is not None and not v:
            raise ValueError("must hold at least one step when given")
        return v

    @model_validator(mode="after")
    def _adapt_alone(self) -> WorkloadSpec:
        if self.adapt is not None and self.steps is not None:
            raise ValueError("steps: an adaptive workload picks its own settings; give 'settings' (its candidates)")
        return self

    @model_validator(mode="after")
    def _caps_above_minimum(self) -> WorkloadSpec:
        p = self.precision
        if p is None:
            return self
        least = max([s.inferences for s in self.steps] if self.steps else [self.inferences_per_setting])
        if p.max_inferences < least:
            raise ValueError(f"precision.max_inferences: {p.max_inferences} is below the {least} inferences a step "
                             f"times at least")  # fmt: skip
        if p.max_seconds < p.min_seconds:
            raise ValueError(f"precision.max_seconds: {p.max_seconds} is below min_seconds {p.min_seconds}")
        return self


BubbleKind = Literal["combined", "cpu", "memory", "bandwidth", "cache", "bubble-up", "command"]


class BubbleSpec(_Strict):
    """One bubble. ``kind`` names the pressure; fields left out take the kind's defaults (pressure.kinds)."""

    #: combined: resident memory + CPU (the TX2 study's bubble); cpu: duty cycle, no memory;
    #: memory: resident footprint, no CPU; bandwidth: streaming RMW over a working set larger than
    #: the LLC, optionally held at rate_mb_s; cache: random RMW over llc_fraction x the LLC; bubble-up:
    #: Mars et al.'s bubble (scattered + streaming RMW over size_mb, the dial), apart from the workload;
    #: command: a co-runner, any program (``command``), run under the bubbles' memory guard and cleanup.
    kind: BubbleKind = "combined"
    #: Resident region of each bubble in MiB (2**20 bytes), over the bubble process's own baseline.
    size_mb: Int | None = Field(default=None, ge=0, le=16 * 1024 * 1024)
    #: Share of one core the bubble tries to use: 0 holds memory only, 1 spins a full core.
    cpu_duty: Float | None = Field(default=None, ge=0.0, le=1.0)
    #: How the busy part walks memory: none (pure compute), stream (sequential RMW), random.
    pattern: Literal["none", "stream", "random", "mixed"] | None = None
    #: bandwidth kind: MiB/s (2^20 bytes a second) to hold by feedback (default: as fast as one core streams).
    rate_mb_s: Float | None = Field(default=None, gt=0.0)
    #: cache kind: working set as a multiple of the last-level cache (default 1.0).
    llc_fraction: Float | None = Field(default=None, gt=0.0, le=64.0)
    #: command kind: the program and its arguments (no shell); restarted when it finishes cleanly.
    command: list[StrictStr] | None = Field(default=None, min_length=1)
    #: command kind: seconds the program must keep running before it counts as ready.
    startup_s: Float = Field(default=1.0, ge=0.0, le=600.0)
    #: Duty-cycle period in milliseconds.
    period_ms: Float = Field(default=50.0, ge=1.0, le=10_000.0)
    #: shared-session (default): all stay in the orchestrator's session, so every thread competes as an
    #: equal and the dial is monotone; own-session: each bubble (and the worker) its own scheduling
    #: entity (autogroup), like an independent app, which on these kernels makes a count sweep of a
    #: multi-threaded workload a sawtooth (benchmarks/bench_placement.py; README "Where bubbles sit").
    placement: Literal["own-session", "shared-session"] = "shared-session"
    #: builtin: bubbleup's own bubble process; stress-ng: stress-ng stressors behind the same protocol.
    backend: Literal["builtin", "stress-ng"] = "builtin"

    @model_validator(mode="after")
    def _consistent(self) -> BubbleSpec:
        from bubbleup.pressure.kinds import check

        check(self)
        return self

    @property
    def holds_memory(self) -> bool:
        return self.kind in ("combined", "memory", "bandwidth", "bubble-up")


class PhaseSpec(_Strict):
    """One phase of a schedule: this many bubble sets (as a count sweep's value) for this many seconds."""

    bubbles: Int = Field(ge=0, le=256)
    seconds: Float = Field(gt=0.0, le=86_400.0)


_LLC_MULTIPLE = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?\s*[x*]?\s*llc\s*$", re.IGNORECASE)


def llc_multiple(text: str) -> float:
    """The multiple of the LLC that ``text`` names: "4 llc" -> 4, "1/8 llc" -> 0.125, "0.5xLLC" -> 0.5."""
    m = _LLC_MULTIPLE.match(text)
    if m is None or (m.group(2) is not None and float(m.group(2)) == 0) or float(m.group(1)) == 0:
        raise ValueError(f"values: {text!r} is neither a size in MiB nor a positive multiple of the LLC "
                         "such as '4 llc' or '1/8 llc'")  # fmt: skip
    return float(m.group(1)) / (float(m.group(2)) if m.group(2) is not None else 1.0)


class ReplicationSpec(_Strict):
    """More repeats where the planned ones disagree (``bubbleup.sweep.replication``): after the planned
    repeats, every point at which some step's repeat IQMs (at one CPU speed) have a relative standard
    error above ``target`` is measured again, one more repeat per round, until each is within it or has
    ``max_repeats``."""

    #: the largest relative standard error of a point's mean over its repeats (0.04: 4% of the mean).
    target: Float = Field(gt=0.0, lt=1.0)
    max_repeats: Int = Field(ge=2, le=1000)


class SweepSpec(_Strict):
    """How pressure varies: bubble ``count`` at a fixed size, bubble ``size_mb`` at a fixed count, or a
    ``schedule`` of phases in which bubbles come and go while one worker keeps inferring (each workload
    step then lasts the whole schedule; the run has one point per repeat, value 0)."""

    axis: Literal["count", "size_mb", "schedule"]
    values: list[Int] = Field(default_factory=lambda: [0], min_length=1, max_length=1000)
    #: schedule axis: the phases, in order.
    phases: list[PhaseSpec] | None = Field(default=None, max_length=10_000)
    #: Bubbles per point when axis is size_mb.
    count: Int = Field(default=1, ge=1, le=256)
    repeats: Int = Field(default=1, ge=1, le=1000)
    #: Seconds to wait after every bubble is ready, before timing.
    settle_s: Float = Field(default=1.0, ge=0.0, le=3600.0)
    #: Point order per repeat. alternate: ascending, then descending, ... so drift spreads evenly.
    order: Literal["alternate", "shuffle", "ascending"] = "alternate"
    seed: Int = 0
    #: More repeats only where the planned ones disagree (None: exactly ``repeats``).
    replication: ReplicationSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _llc_relative_sizes(cls, data: Any) -> Any:
        """Sizes written against this machine's LLC ("4 llc", "1/8 llc") become MiB here, so one scenario
        reaches past the LLC on a 32 MiB cache and a 300 MiB one alike; the manifest keeps both forms.
        Two that land on the same MiB (or on a literal value) are one point."""
        if not isinstance(data, dict) or not isinstance(data.get("values"), list):
            return data
        given = data["values"]
        if not any(isinstance(v, str) for v in given):
            return data
        if data.get("axis") != "size_mb":
            word = next(v for v in given if isinstance(v, str))
            if _LLC_MULTIPLE.match(word) is None:
                axis = data.get("axis") or "count"
                raise ValueError(f"values: {word!r} is not a number (a {axis} sweep takes numbers)")
            raise ValueError("values: sizes relative to the LLC ('4 llc') are for a size_mb sweep only")
        multiples = {v: llc_multiple(v) for v in given if isinstance(v, str)}
        from bubbleup.pressure.kinds import llc_bytes

        llc_mb = llc_bytes() / (1 << 20)
        literal = [v for v in given if not isinstance(v, str)]
        resolved: list[Any] = []
        for v in given:
            if isinstance(v, str):
                v = max(1, round(multiples[v] * llc_mb))
                if v in resolved or v in literal:
                    continue
            resolved.append(v)
        return {**data, "values": resolved}

    @field_validator("values")
    @classmethod
    def _values_ok(cls, v: list[int]) -> list[int]:
        if any(x < 0 for x in v):
            raise ValueError("values must not be negative")
        if len(set(v)) != len(v):
            raise ValueError("values must not repeat (use repeats to measure a point again)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _values_or_phases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("axis") == "schedule":
            if "values" in data:
                raise ValueError("values: a schedule sweep takes phases, not values")
            if not data.get("phases"):
                raise ValueError("phases: a schedule sweep needs at least one phase {bubbles: N, seconds: S}")
        else:
            if "phases" in data:
                raise ValueError("phases: only a schedule sweep (axis: schedule) takes phases")
            if "values" not in data:
                raise ValueError("values: required but missing")
        return data

    @model_validator(mode="after")
    def _count_limit(self) -> SweepSpec:
        if self.axis == "count" and max(self.values) > 256:
            raise ValueError("values: at most 256 bubbles per point")
        return self

    @model_validator(mode="after")
    def _replication_possible(self) -> SweepSpec:
        r = self.replication
        if r is not None:
            if self.repeats < 2:
                raise ValueError("replication: needs repeats of at least 2 (one repeat has no spread to judge)")
            if r.max_repeats < self.repeats:
                raise ValueError(f"replication.max_repeats: {r.max_repeats} is below repeats ({self.repeats})")
            if self.axis == "schedule":
                raise ValueError("replication: a schedule sweep has one point; repeat it with repeats")
        return self

    @property
    def schedule_s(self) -> float:
        """A schedule's whole length, seconds (0 for the other axes)."""
        return sum(p.seconds for p in self.phases or [])

    def phase_starts(self) -> list[float]:
        """Each phase's start, seconds after the schedule began."""
        out, t = [], 0.0
        for p in self.phases or []:
            out.append(t)
            t += p.seconds
        return out


class Limits(_Strict):
    """Safety and patience."""

    #: Longest one setting step may take (warm-up + timed) before the point is marked "timeout".
    step_timeout_s: Float = Field(default=300.0, gt=0.0)
    #: Longest the bubbles of one point may take to become resident and running.
    ready_timeout_s: Float = Field(default=120.0, gt=0.0)
    #: Longest the workload may take to load.
    load_timeout_s: Float = Field(default=600.0, gt=0.0)
    #: Memory (MiB) always left available to the rest of the machine.
    reserve_mb: Int = Field(default=2048, ge=0)
    #: Peak bubble memory may use at most this share of the memory available at start.
    max_memory_fraction: Float = Field(default=0.6, gt=0.0, le=1.0)
    #: Explicit opt-in to go past both limits above (e.g. inside a memory-limited cgroup).
    allow_unsafe_memory: StrictBool = False
    #: End the run (status failed, completed points kept) the first time a point's pressure could not be
    #: applied, instead of recording that point failed and going on. What ``score`` and ``check-prediction``
    #: ask: a co-runner that cannot run beside the reporter fails every repeat the same way.
    stop_on_pressure_failure: StrictBool = False
    #: How long the start check watches the machine for other processes' CPU (validity's ``machine_busy_start``);
    #: the workers load meanwhile. Shorter is quicker and sees less: 0.25 cores is 0.25 s of CPU per second.
    start_check_s: Float = Field(default=1.0, ge=0.1, le=60.0)


class TelemetrySpec(_Strict):
    """The machine sampler that runs during every point (telemetry.csv)."""

    enabled: StrictBool = True
    interval_s: Float = Field(default=0.1, ge=0.01, le=60.0)


class CpuSpec(_Strict):
    """Which CPUs the worker and the bubbles run on (see bubbleup.pressure.placement)."""

    #: spread (default): bubbles pinned round-robin over the allowed CPUs, so each CPU's load is known at
    #: every count; free: the scheduler decides; apart: bubbles only on CPUs the workload does not use.
    #: pack: bubbles fill the CPUs the workload leaves, by duty, then share the workload's (a fixed CPU each).
    placement: Literal["free", "spread", "apart", "pack"] = "spread"
    #: CPUs the worker is pinned to (default: not pinned; for apart and pack, the first half of the allowed CPUs).
    workload: list[Int] | None = None

    @model_validator(mode="after")
    def _possible_here(self) -> CpuSpec:
        from bubbleup.pressure.placement import allowed_cpus, check

        check(self.placement, self.workload, allowed_cpus())
        return self


class SloSpec(_Strict):
    """A latency objective the report holds every setting to (``bubbleup recommend`` with these values): per
    pressure level, the most accurate setting whose latency at ``percentile`` is within ``ms / margin``."""

    ms: Float = Field(gt=0.0, le=3_600_000.0)
    percentile: Literal[50, 90, 95, 99] = 50
    margin: Float = Field(default=1.3, ge=1.0, le=100.0)
