"""What a run will do, decided before anything starts: the steps of every point, the point order,
and whether the scenario's peak memory is safe on this machine. Pure: no process is started here."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bubbleup.errors import UserError
from bubbleup.pressure.kinds import safe_mb
from bubbleup.scenario import PrecisionSpec, Scenario, WorkloadSpec
from bubbleup.store.records import ADAPTIVE

MIB = 1 << 20


@dataclass(frozen=True)
class StepPlan:
    workload: str  # the workload's label
    setting: str
    warmup: int
    inferences: int  # the count, or the minimum under ``precision``
    precision: PrecisionSpec | None = None


def steps_of(spec: WorkloadSpec) -> list[StepPlan]:
    """What a workload runs at every point: one adaptive step, an explicit schedule, or every setting in turn."""
    label = spec.label or spec.kind
    if spec.adapt is not None:  # one step per point, in which the workload picks among its settings
        return [StepPlan(label, ADAPTIVE, spec.warmup, spec.inferences_per_setting, spec.precision)]
    if spec.steps is not None:
        return [StepPlan(label, s.setting, spec.warmup if s.warmup is None else s.warmup, s.inferences, spec.precision)
                for s in spec.steps]  # fmt: skip
    return [StepPlan(label, s, spec.warmup, spec.inferences_per_setting, spec.precision) for s in spec.settings]


def all_steps(scenario: Scenario) -> list[StepPlan]:
    return [step for spec in scenario.specs for step in steps_of(spec)]


def plan_points(scenario: Scenario) -> list[tuple[int, int]]:
    """(repeat, value) in execution order. Repeats alternate direction (or shuffle) so drift spreads."""
    sweep = scenario.sweep
    rng = random.Random(sweep.seed)
    return [(r, v) for r in range(sweep.repeats) for v in point_order(sweep.values, r, sweep.order, rng)]


def point_order(values: Iterable[int], repeat: int, order: str, rng: random.Random) -> list[int]:
    """The order one repeat measures ``values`` in, by the sweep's ``order``: ascending; ascending in even
    repeats and descending in odd ones (``alternate``); or shuffled by ``rng`` (``shuffle``). The planned
    repeats and every extra repeat (:mod:`bubbleup.sweep.replication`) are ordered by this one rule."""
    ascending = sorted(values)
    if order == "ascending":
        return ascending
    if order == "alternate":
        return ascending if repeat % 2 == 0 else ascending[::-1]
    rng.shuffle(ascending)
    return ascending


def check_memory_safety(
    scenario: Scenario, available_mb: float | None = None, source: str = "scenario"
) -> dict[str, float]:
    """Refuse a scenario whose peak bubble memory would endanger the machine: one line naming the file
    (``source``), the field whose worst point is too big, and the numbers."""
    lim = scenario.limits
    available = psutil.virtual_memory().available / MIB if available_mb is None else available_mb
    allowed = safe_mb(available, lim.max_memory_fraction, lim.reserve_mb)
    peak = scenario.peak_bubble_mb()
    facts = {"peak_bubble_mb": peak, "available_mb": available, "allowed_mb": allowed}
    if peak > allowed and not lim.allow_unsafe_memory:
        worst = max(scenario.sweep.values, key=scenario.bubble_mb_at)
        count = len(scenario.pressure_at(worst))
        # the field to change: the reserve when it alone leaves nothing, else the sweep that asks too much
        field = "limits.reserve_mb" if lim.reserve_mb >= available else "sweep.values"
        raise UserError(
            f"{source}: {field}: refusing to run {scenario.name!r}: peak bubble memory {peak} MiB "
            f"({count} bubbles at {scenario.sweep.axis}={worst}) exceeds the "
            f"safe limit of {allowed:.0f} MiB (the lesser of {lim.max_memory_fraction:.0%} of the {available:.0f} "
            f"MiB available and available minus the {lim.reserve_mb} MiB reserve); shrink the sweep or set "
            f"limits.allow_unsafe_memory: true"
        )
    return facts


def adapt_profiles(scenario: Scenario, source: str = "scenario") -> dict[str, dict[str, Any]]:
    """Per adaptive workload (by label), the profile table its policy runs on, read now so that a profile
    that is missing or does not cover the workload's settings is refused before anything starts, in one
    line naming the file and field. ``options_differ`` names the workload options the profile was measured
    with otherwise (its latencies may then not be this workload's: a warning, not an error)."""
    from bubbleup.analysis import tradeoff
    from bubbleup.analysis.summary import summarise
    from bubbleup.store.layout import MANIFEST, is_run_dir
    from bubbleup.store.reader import load_run

    out: dict[str, dict[str, Any]] = {}
    forms = [("workload", scenario.workload)] + [(f"workloads.{i}", w) for i, w in enumerate(scenario.workloads or [])]
    for where, spec in forms:
        if spec is None or spec.adapt is None:
            continue
        field = f"{source}: {where}.adapt.profile"
        path = Path(spec.adapt.profile).expanduser()
        if not is_run_dir(path):
            raise UserError(f"{field}: {path} is not a run directory (no {MANIFEST}); measure a profile first, a "
                            f"count sweep of the same workload, e.g. python -m bubbleup run "
                            f"scenarios/approxnet-profile.yaml --out {path}")  # fmt: skip
        try:
            run = load_run(path)
        except UserError as exc:  # the profile's own problem, said as this scenario's field
            raise UserError(f"{field}: {exc}") from None
        kinds = {str(w.get("kind")) for w in _workload_entries(run.effective)}
        if kinds and kinds != {spec.kind}:
            raise UserError(f"{field}: {path} measured {', '.join(sorted(kinds))}, not {spec.kind}")
        settings = [str(s) for s in spec.settings] if isinstance(spec.settings, list) else []
        try:
            table = tradeoff.profile_table(run, summarise(run), settings, spec.adapt.percentile)
        except tradeoff.TradeoffError as exc:
            raise UserError(f"{field}: {exc}") from None
        table["source"] = str(path.resolve())
        measured = next((w.get("options") or {} for w in _workload_entries(run.effective)), {})
        table["options_differ"] = sorted(k for k in set(measured) | set(spec.options)
                                         if measured.get(k) != spec.options.get(k))  # fmt: skip
        out[spec.label or spec.kind] = table
    return out


def _workload_entries(effective: dict[str, Any]) -> list[dict[str, Any]]:
    one = effective.get("workload")
    return [one] if isinstance(one, dict) else [w for w in effective.get("workloads") or [] if isinstance(w, dict)]
