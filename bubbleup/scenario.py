"""Scenario files: YAML -> frozen, validated objects, as given and as effective.

A scenario says what to measure (``workload``), what pressure to apply
(``bubble``), how to vary it (``sweep``) and what is safe (``limits``).
Unknown keys are errors, not silently ignored: a typo in a benchmark config
otherwise produces a plausible-looking wrong result.

Every problem is reported as one line: ``FILE: FIELD: PROBLEM``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bubbleup.errors import UserError


def _reject_text_and_bool(value: Any) -> Any:
    # YAML gives us real numbers; a quoted "5" or a `true` where a number belongs is a mistake.
    if isinstance(value, (str, bool)):
        raise ValueError(f"expected a number, got {type(value).__name__} {value!r}")
    return value


Int = Annotated[int, BeforeValidator(_reject_text_and_bool)]
Float = Annotated[float, BeforeValidator(_reject_text_and_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(_Strict):
    """One explicit step of a workload schedule, e.g. "LL for 100 inferences"."""

    setting: StrictStr
    inferences: Int = Field(ge=1, le=1_000_000)
    warmup: Int = Field(default=0, ge=0, le=100_000)


class PrecisionSpec(_Strict):
    """Samples chosen by precision (MLPerf LoadGen's minimum count and duration as the floor): each
    step times at least its ``inferences`` and ``min_seconds``, then goes on until the median's 95% CI
    half-width is within ``target`` of the median, or a cap is reached (recorded, and flagged)."""

    #: Wanted CI half-width as a share of the median (0.05: the median is known to within 5%).
    target: Float = Field(default=0.05, gt=0.0, lt=1.0)
    min_seconds: Float = Field(default=0.0, ge=0.0, le=3600.0)
    max_inferences: Int = Field(default=1000, ge=1, le=1_000_000)
    max_seconds: Float = Field(default=10.0, gt=0.0, le=3600.0)


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
    #: Time each step until its median is this precise (the step's inferences are then the minimum);
    #: omitted: exactly the step's inferences, as an explicit schedule of fixed counts needs.
    precision: PrecisionSpec | None = None
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
    #: bandwidth kind: MB/s to hold by feedback (default: as fast as one core streams).
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


class SweepSpec(_Strict):
    """How pressure varies: bubble ``count`` at a fixed size, or bubble ``size_mb`` at a fixed count."""

    axis: Literal["count", "size_mb"]
    values: list[Int] = Field(min_length=1, max_length=1000)
    #: Bubbles per point when axis is size_mb.
    count: Int = Field(default=1, ge=1, le=256)
    repeats: Int = Field(default=1, ge=1, le=1000)
    #: Seconds to wait after every bubble is ready, before timing.
    settle_s: Float = Field(default=1.0, ge=0.0, le=3600.0)
    #: Point order per repeat. alternate: ascending, then descending, ... so drift spreads evenly.
    order: Literal["alternate", "shuffle", "ascending"] = "alternate"
    seed: Int = 0

    @field_validator("values")
    @classmethod
    def _values_ok(cls, v: list[int]) -> list[int]:
        if any(x < 0 for x in v):
            raise ValueError("values must not be negative")
        if len(set(v)) != len(v):
            raise ValueError("values must not repeat (use repeats to measure a point again)")
        return v

    @model_validator(mode="after")
    def _count_limit(self) -> SweepSpec:
        if self.axis == "count" and max(self.values) > 256:
            raise ValueError("values: at most 256 bubbles per point")
        return self


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


class TelemetrySpec(_Strict):
    """The machine sampler that runs during every point (telemetry.csv)."""

    enabled: StrictBool = True
    interval_s: Float = Field(default=0.1, ge=0.01, le=60.0)


class CpuSpec(_Strict):
    """Which CPUs the worker and the bubbles run on (see bubbleup.pressure.placement)."""

    #: spread (default): bubbles pinned round-robin over the allowed CPUs, so each CPU's load is known at
    #: every count; free: the scheduler decides; apart: bubbles only on CPUs the workload does not use.
    placement: Literal["free", "spread", "apart"] = "spread"
    #: CPUs the worker is pinned to (default: not pinned; for apart, the first half of the allowed CPUs).
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


class Scenario(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: StrictStr = ""
    #: One workload, or ...
    workload: WorkloadSpec | None = None
    #: ... several, compared under the same pressure (e.g. ApproxNet vs MCDNN configurations).
    #: Each runs in a fresh worker of its own at every point, closed before the next starts,
    #: so their memory is measured alone.
    workloads: list[WorkloadSpec] | None = None
    #: One kind of bubble, or ...
    bubble: BubbleSpec | None = None
    #: ... a set of kinds, started together: a count of N means N copies of the whole set.
    bubbles: list[BubbleSpec] | None = None
    sweep: SweepSpec
    limits: Limits = Field(default_factory=Limits)
    telemetry: TelemetrySpec = Field(default_factory=TelemetrySpec)
    cpus: CpuSpec = Field(default_factory=CpuSpec)
    #: A device budget: a preset name (jetson-tx2, jetson-nano, raspberry-pi-4) or a mapping of
    #: preset / memory_mb / cpus / swap. Worker and bubbles then run inside a cgroup with those limits.
    budget: str | dict[str, Any] | None = None
    #: A latency objective: the report then says which setting to use at each pressure (needs accuracy).
    slo: SloSpec | None = None
    #: The data as the user gave it (recorded in the manifest; what a resumed run re-validates).
    _given: dict[str, Any] | None = PrivateAttr(default=None)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Scenario:
        """Read and validate a scenario file; bad input raises :class:`bubbleup.errors.UserError` in one line."""
        return load_scenario(path)[0]

    @property
    def given(self) -> dict[str, Any]:
        """The scenario as given: the file's data, or the effective scenario for one built in code."""
        if self._given is not None:
            return self._given
        return self.model_dump(mode="json", exclude_none=True)

    @field_validator("budget")
    @classmethod
    def _budget_ok(cls, v: str | dict[str, Any] | None) -> dict[str, Any] | None:
        from bubbleup.pressure.budget_spec import BudgetSpec

        spec = BudgetSpec.parse(v)
        return spec.to_dict() if spec is not None else None

    @model_validator(mode="after")
    def _one_workload_form(self) -> Scenario:
        if self.workload is None and self.workloads is None:
            raise ValueError("workload: required but missing (or 'workloads: [...]' to compare several)")
        if self.workload is not None and self.workloads is not None:
            raise ValueError("workloads: give either 'workload' or 'workloads', not both")
        if self.workloads is not None:
            if not self.workloads:
                raise ValueError("workloads: must hold at least one workload")
            labels = [w.label or w.kind for w in self.workloads]
            dup = next((x for x in labels if labels.count(x) > 1), None)
            if dup is not None:
                raise ValueError(f"workloads: label {dup!r} is used twice; give each workload a distinct label")
        return self

    @model_validator(mode="after")
    def _precision_within_timeout(self) -> Scenario:
        for where, spec in [("workload", self.workload)] + [(f"workloads.{i}", w) for i, w in
                                                              enumerate(self.workloads or [])]:  # fmt: skip
            p = spec.precision if spec is not None else None
            if p is not None and p.max_seconds >= self.limits.step_timeout_s:
                raise ValueError(f"{where}.precision.max_seconds: {p.max_seconds} s must be below "
                                 f"limits.step_timeout_s ({self.limits.step_timeout_s} s), or every capped step "
                                 f"would be recorded as a timeout")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _one_bubble_form(self) -> Scenario:
        if self.bubble is not None and self.bubbles is not None:
            raise ValueError("bubbles: give either 'bubble' or 'bubbles', not both")
        if self.bubbles is not None and not self.bubbles:
            raise ValueError("bubbles: must hold at least one bubble")
        if len({b.placement for b in self.bubble_set}) > 1:
            raise ValueError("bubbles: every bubble of a set must have the same placement")
        if self.sweep.axis == "size_mb" and not any(b.holds_memory for b in self.bubble_set):
            raise ValueError("sweep.axis: a size_mb sweep needs a bubble kind that holds memory")
        if any(b.kind == "bubble-up" for b in self.bubble_set) and self.cpus.placement != "apart":
            raise ValueError("cpus.placement: a bubble-up bubble presses on the memory subsystem from CPUs the "
                             "workload does not use, as in Bubble-Up; set cpus: {placement: apart}")
        return self

    @property
    def bubble_set(self) -> list[BubbleSpec]:
        """The bubbles started together at a count of one (a single default bubble if none given)."""
        if self.bubbles is not None:
            return list(self.bubbles)
        return [self.bubble if self.bubble is not None else BubbleSpec()]

    @property
    def placement(self) -> str:
        return self.bubble_set[0].placement

    def pressure_at(self, value: int) -> list[tuple[BubbleSpec, int]]:
        """Every bubble (effective spec, size in MiB) running at the sweep point ``value``."""
        from bubbleup.pressure.kinds import effective, region_mb

        specs = [effective(b) for b in self.bubble_set]
        if self.sweep.axis == "count":
            return [(b, region_mb(b)) for _ in range(value) for b in specs]
        # On a size sweep a 0 MiB bubble still burns CPU: the right control for the memory effect.
        return [(b, value if b.holds_memory else region_mb(b)) for _ in range(self.sweep.count) for b in specs]

    @property
    def specs(self) -> list[WorkloadSpec]:
        """Every workload of the scenario, each with its label filled in."""
        items = [self.workload] if self.workload is not None else list(self.workloads or [])
        return [w if w.label else w.model_copy(update={"label": w.kind}) for w in items]

    def points(self) -> list[tuple[int, int]]:
        """(bubble_count, bubble_size_mb) for every sweep value, in the order given.

        bubble_size_mb is the swept size on a size sweep; on a count sweep, the region of the
        set's largest memory-holding bubble (0 if none holds memory).
        """
        from bubbleup.pressure.kinds import effective, region_mb

        if self.sweep.axis == "size_mb":
            return [(len(self.pressure_at(v)), v) for v in self.sweep.values]
        size = max((region_mb(effective(b)) for b in self.bubble_set if b.holds_memory), default=0)
        return [(len(self.pressure_at(v)), size) for v in self.sweep.values]

    def peak_bubble_mb(self) -> int:
        """The most bubble memory any point holds at once."""
        return max(sum(size for _, size in self.pressure_at(v)) for v in self.sweep.values)


def _key_text(key: object) -> str:
    """A key as it appears in a field path; quoted when it is empty or holds spaces, newlines or other
    unprintable characters, so the path stays readable and the error stays one line."""
    text = str(key)
    return text if text and text.isprintable() and not any(c.isspace() for c in text) else repr(text)


def _first_error_line(exc: ValidationError) -> tuple[str, str]:
    errors = exc.errors()
    first = errors[0]
    field = ".".join(_key_text(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (not part of the scenario format)"
    elif first["type"] == "missing":
        msg = "required but missing"
    msg = msg.replace("Value error, ", "")
    # Model-level validators name the field they are about as "field: problem".
    head, sep, rest = msg.partition(": ")
    if sep and head.replace(".", "").replace("_", "").isalnum() and " " not in head:
        field = f"{field}.{head}" if field != "(top level)" else head
        msg = rest
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return field, msg


def scenario_from_dict(data: Any, source: str) -> Scenario:
    """Validate raw YAML data into a Scenario whose workload options and settings are resolved.

    The returned scenario is the *effective* one: workload options have their defaults filled,
    and setting names/presets are resolved to canonical setting names.
    """
    if not isinstance(data, dict):
        raise UserError(f"{source}: (top level): expected a mapping of keys, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        field, msg = _first_error_line(exc)
        raise UserError(f"{source}: {field}: {msg}") from None
    effective = _resolve_bubbles(_resolve_workload(scenario, source))
    effective._given = data
    return effective


def _resolve_bubbles(scenario: Scenario) -> Scenario:
    """Fill every bubble's kind defaults in, so the effective scenario says exactly what ran."""
    from bubbleup.pressure.kinds import effective

    if scenario.bubbles is not None:
        return scenario.model_copy(update={"bubbles": [effective(b) for b in scenario.bubbles]})
    return scenario.model_copy(update={"bubble": effective(scenario.bubble_set[0])})


def _resolve_workload(scenario: Scenario, source: str) -> Scenario:
    if scenario.workload is not None:
        return scenario.model_copy(update={"workload": _resolve_spec(scenario.workload, source, "workload")})
    specs = [_resolve_spec(w, source, f"workloads.{i}") for i, w in enumerate(scenario.workloads or [])]
    return scenario.model_copy(update={"workloads": specs})


def _resolve_spec(spec: WorkloadSpec, source: str, where: str) -> WorkloadSpec:
    from workloads import UnknownWorkload, get_workload_class

    try:
        cls = get_workload_class(spec.kind)
    except UnknownWorkload as exc:
        raise UserError(f"{source}: {where}.kind: {exc.args[0]}") from None
    try:
        options = cls.Options.model_validate(spec.options)
    except ValidationError as exc:
        field, msg = _first_error_line(exc)
        raise UserError(f"{source}: {where}.options.{field}: {msg}") from None
    workload = cls(options)

    def canonical(name: str, field: str) -> str:
        try:
            return workload.resolve(name)
        except KeyError:
            known = list(workload.presets()) + workload.settings()
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise UserError(f"{source}: {field}: unknown setting {name!r} for {spec.kind}; known: {shown}") from None

    settings = spec.settings
    settings = workload.settings() if settings == "all" else [canonical(s, f"{where}.settings") for s in settings]
    steps = spec.steps
    if steps is not None:
        steps = [
            st.model_copy(update={"setting": canonical(st.setting, f"{where}.steps.{i}.setting")})
            for i, st in enumerate(steps)
        ]
    return spec.model_copy(update={"settings": settings, "steps": steps, "options": options.model_dump(mode="json")})


def load_scenario(path: str | Path) -> tuple[Scenario, dict[str, Any]]:
    """Read and validate a scenario file. Returns (effective scenario, raw data as given)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{source}: is a directory, not a scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(parse)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{source}: {where}: invalid YAML: {problem}") from None
    if data is None:
        raise UserError(f"{source}: (top level): the file is empty")
    return scenario_from_dict(data, source), data
