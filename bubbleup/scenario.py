"""Scenario files: YAML -> frozen, validated objects, as given and as effective.

A scenario says what to measure (``workload``), what pressure to apply
(``bubble``), how to vary it (``sweep``) and what is safe (``limits``); each
part's model lives in :mod:`bubbleup.specs`, this module puts them together.

Every problem is reported as one line: ``FILE: FIELD: PROBLEM``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, StrictStr, ValidationError, field_validator, model_validator

from bubbleup.errors import UserError
from bubbleup.inputs import read_yaml, validation_line
from bubbleup.specs import (
    AdaptSpec,
    BubbleKind,
    BubbleSpec,
    CpuSpec,
    Limits,
    PhaseSpec,
    PrecisionSpec,
    SloSpec,
    Step,
    SweepSpec,
    TelemetrySpec,
    WorkloadSpec,
    _Strict,
)
from bubbleup.trees import leaf_pairs

__all__ = ["AdaptSpec", "BubbleKind", "BubbleSpec", "CpuSpec", "Limits", "PhaseSpec", "PrecisionSpec", "Scenario",
           "SloSpec", "Step", "SweepSpec", "TelemetrySpec", "WorkloadSpec", "load_scenario", "scenario_from_dict"]


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
    #: What ``_given`` resolved to: a copy with changes (``model_copy(update=...)``) no longer is it.
    _resolved: dict[str, Any] | None = PrivateAttr(default=None)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Scenario:
        """Read and validate a scenario file; bad input raises :class:`bubbleup.errors.UserError` in one line."""
        return load_scenario(path)[0]

    @property
    def given(self) -> dict[str, Any]:
        """The scenario as given: the file's data, with what code changed since (``model_copy(update=...)``)
        laid over it field by field, so that it resolves again as a file does (a cache bubble's size, the
        settings of ``all``, a precision's batches follow the change); the effective scenario for one built in
        code."""
        now = self.model_dump(mode="json", exclude_none=True)
        if self._given is None or self._resolved is None:
            return now
        return _rebase(self._given, self._resolved, now)

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
    def _schedule_steps(self) -> Scenario:
        if self.sweep.axis != "schedule":
            return self
        for where, spec in [("workload", self.workload)] + [(f"workloads.{i}", w) for i, w in
                                                              enumerate(self.workloads or [])]:  # fmt: skip
            if spec is None:
                continue
            if spec.precision is not None:
                raise ValueError(f"{where}.precision: under a schedule every step lasts the whole schedule "
                                 f"({self.sweep.schedule_s:g} s); precision does not apply")  # fmt: skip
            if spec.steps is not None:
                raise ValueError(f"{where}.steps: under a schedule every setting runs through the whole schedule; "
                                 "give 'settings'")  # fmt: skip
        if self.sweep.schedule_s >= self.limits.step_timeout_s:
            raise ValueError(f"limits.step_timeout_s: {self.limits.step_timeout_s:g} s is shorter than the schedule "
                             f"({self.sweep.schedule_s:g} s), which every step runs through")  # fmt: skip
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
        if (self.sweep.axis == "size_mb" and 0 in (self.sweep.values or [])
                and any(b.kind == "bandwidth" and b.rate_mb_s is not None for b in self.bubble_set)):
            raise ValueError("sweep.values: a bandwidth bubble holds its rate_mb_s over a region, and a size of 0 "
                             "has no region; start the sizes above 0")  # fmt: skip
        if self.sweep.axis == "count" and max(self.sweep.values) * len(self.bubble_set) > 256:
            raise ValueError(f"sweep.values: at most 256 bubbles per point ({max(self.sweep.values)} sets of "
                             f"{len(self.bubble_set)} bubbles are {max(self.sweep.values) * len(self.bubble_set)})")
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
        if self.sweep.axis == "schedule":  # the schedule's one point holds, at its peak, its largest phase
            return self.sets_of(max(p.bubbles for p in self.sweep.phases or []))
        if self.sweep.axis == "count":
            return self.sets_of(value)
        # On a size sweep a 0 MiB bubble still burns CPU: the right control for the memory effect.
        return [(b, value if b.holds_memory else region_mb(b)) for _ in range(self.sweep.count) for b in specs]

    def sets_of(self, copies: int) -> list[tuple[BubbleSpec, int]]:
        """``copies`` copies of the bubble set, each bubble at its kind's region (a count sweep's point)."""
        from bubbleup.pressure.kinds import effective, region_mb

        specs = [effective(b) for b in self.bubble_set]
        return [(b, region_mb(b)) for _ in range(copies) for b in specs]

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

    def bubble_mb_at(self, value: int) -> int:
        """The bubble memory the point ``value`` holds at once: every bubble's region and its process's own
        (``BASELINE_MB``), as the pool counts it when it starts them (eight cpu bubbles hold 256 MiB, not 0)."""
        from bubbleup.pressure.kinds import BASELINE_MB

        return sum(size + BASELINE_MB for _, size in self.pressure_at(value))

    def peak_bubble_mb(self) -> int:
        """The most bubble memory any point holds at once."""
        return max(self.bubble_mb_at(v) for v in self.sweep.values)


def _rebase(given: Any, resolved: Any, now: Any) -> Any:
    """``given`` with the changes from ``resolved`` to ``now`` applied: keys added, removed or changed in code
    take ``now``'s value; what code left alone keeps the user's form (``settings: all``, a field left out)."""
    if now == resolved:
        return given
    if not (isinstance(given, dict) and isinstance(resolved, dict) and isinstance(now, dict)):
        return now
    out = dict(given)
    for key in set(resolved) | set(now):
        if key not in now:
            out.pop(key, None)
        elif key not in resolved:
            out[key] = now[key]
        elif resolved[key] != now[key]:  # changed in code; a key unchanged keeps the user's form, or its absence
            out[key] = _rebase(given[key], resolved[key], now[key]) if key in given else now[key]
    return out


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
        field, msg = validation_line(exc)
        raise UserError(f"{source}: {field}: {msg}") from None
    effective = _resolve_precision(_resolve_bubbles(_resolve_workload(scenario, source)), source)
    effective._given = data
    effective._resolved = effective.model_dump(mode="json", exclude_none=True)
    return effective


def _resolve_bubbles(scenario: Scenario) -> Scenario:
    """Fill every bubble's kind defaults in, so the effective scenario says exactly what ran."""
    from bubbleup.pressure.kinds import effective

    if scenario.bubbles is not None:
        return scenario.model_copy(update={"bubbles": [effective(b) for b in scenario.bubbles]})
    return scenario.model_copy(update={"bubble": effective(scenario.bubble_set[0])})


def _resolve_precision(scenario: Scenario, source: str) -> Scenario:
    """When a bubble burns part of a core or holds a rate, fill every precision rule's ``batch_ms`` (when left
    out) with the longest such duty period and make its ``min_seconds`` span ``min_periods`` of it; otherwise
    batches are single samples (``batch_ms`` 0). See PrecisionSpec."""
    duty = [b.period_ms / 1000 for b in scenario.bubble_set
            if b.rate_mb_s is not None or 0 < (b.cpu_duty or 0) < 1]  # fmt: skip
    # No duty cycle, or no point runs a bubble: no period to span, and nothing that holds samples together.
    spans = bool(duty) and any(scenario.pressure_at(v) for v in scenario.sweep.values)
    period = max(duty) if spans else 0.0

    def spanned(spec: WorkloadSpec, where: str) -> WorkloadSpec:
        p = spec.precision
        if p is None:
            return spec
        update: dict[str, float] = {} if p.batch_ms is not None else {"batch_ms": round(period * 1000, 6)}
        if p.min_periods * period > p.min_seconds:
            span = round(p.min_periods * period, 6)
            if span >= p.max_seconds:
                raise UserError(f"{source}: {where}.precision.min_periods: {p.min_periods} periods of "
                                f"{period * 1000:g} ms take {span:g} s, not below max_seconds ({p.max_seconds:g} s); "
                                f"lower min_periods or bubble.period_ms, or raise max_seconds")  # fmt: skip
            update["min_seconds"] = span
        return spec.model_copy(update={"precision": p.model_copy(update=update)}) if update else spec

    if scenario.workload is not None:
        return scenario.model_copy(update={"workload": spanned(scenario.workload, "workload")})
    return scenario.model_copy(update={"workloads": [spanned(w, f"workloads.{i}")
                                                     for i, w in enumerate(scenario.workloads or [])]})  # fmt: skip


def _resolve_workload(scenario: Scenario, source: str) -> Scenario:
    if scenario.workload is not None:
        return scenario.model_copy(update={"workload": _resolve_spec(scenario.workload, source, "workload")})
    specs = [_resolve_spec(w, source, f"workloads.{i}") for i, w in enumerate(scenario.workloads or [])]
    return scenario.model_copy(update={"workloads": specs})


def _coerced(given: Any, became: Any) -> str:
    """``field: problem`` for the first value given as one JSON type and read as another (a string or a bool
    read as a number, a string read as a bool); "" when none was."""
    for path, was, now in leaf_pairs(given, became):
        if isinstance(now, int | float) and not isinstance(now, bool) and isinstance(was, str | bool):
            kind = "integer" if isinstance(now, int) else "number"
            return f"{path}: Input should be a valid {kind}, not {type(was).__name__} {was!r}"
        if isinstance(now, bool) and not isinstance(was, bool):
            return f"{path}: Input should be a valid boolean, not {type(was).__name__} {was!r}"
    return ""


def _resolve_spec(spec: WorkloadSpec, source: str, where: str) -> WorkloadSpec:
    from workloads import UnknownWorkload, get_workload_class

    try:
        cls = get_workload_class(spec.kind)
    except UnknownWorkload as exc:
        raise UserError(f"{source}: {where}.kind: {exc.args[0]}") from None
    try:
        options = cls.Options.model_validate(spec.options)
    except ValidationError as exc:
        field, msg = validation_line(exc)
        raise UserError(f"{source}: {where}.options.{field}: {msg}") from None
    # A quoted "8" or a true is not a number here, as everywhere else in a scenario (pydantic's lax mode took
    # them; its strict mode also refuses a YAML list for a tuple, so the check is of what became of each value).
    if coerced := _coerced(spec.options, options.model_dump(mode="json")):
        raise UserError(f"{source}: {where}.options.{coerced}")
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
    twice = next((s for i, s in enumerate(settings) if s in settings[:i]), None)
    if twice is not None:  # measured twice a point, and pooled as one in every summary
        named = [str(n) for n in spec.settings if canonical(str(n), f"{where}.settings") == twice]
        raise UserError(f"{source}: {where}.settings: {' and '.join(repr(n) for n in named)} name the same setting "
                        f"{twice!r}; give each setting once")  # fmt: skip
    steps = spec.steps
    if steps is not None:
        steps = [
            st.model_copy(update={"setting": canonical(st.setting, f"{where}.steps.{i}.setting")})
            for i, st in enumerate(steps)
        ]
    return spec.model_copy(update={"settings": settings, "steps": steps, "options": options.model_dump(mode="json")})


def load_scenario(path: str | Path) -> tuple[Scenario, dict[str, Any]]:
    """Read and validate a scenario file. Returns (effective scenario, raw data as given)."""
    data = read_yaml(path, "scenario")
    source = str(path)
    return scenario_from_dict(data, source), data
