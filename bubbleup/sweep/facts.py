"""What a run's manifest says of it before anything starts: the new manifest itself, the CPU-demand facts
the cliff prediction needs, where bubbles and the worker run, the calibration the run relies on, and whether a
resume here would measure under what the run was measured under so far."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bubbleup.analysis import stats
from bubbleup.machine import environment, telemetry
from bubbleup.pressure.placement import CpuAssignment, allowed_cpus, assign
from bubbleup.scenario import Scenario
from bubbleup.store.manifest import Manifest, StepEntry
from bubbleup.sweep.plan import all_steps, plan_points
from bubbleup.trees import leaf_pairs


def cpu_demand(scenario: Scenario, allowed: int) -> dict[str, Any]:
    """What the CPU-demand prediction of the cliff needs (analysis.demand): the cores the run may use
    (its affinity, or a budget's quota when smaller) and the cores one unit of the sweep's pressure asks
    for: the summed duty of one bubble set (a count sweep) or of all ``sweep.count`` bubbles (a size sweep)."""
    from bubbleup.pressure.budget_spec import BudgetSpec
    from bubbleup.pressure.kinds import effective

    budget_spec = BudgetSpec.parse(scenario.budget)
    budget = budget_spec.cpus if budget_spec is not None else None
    cores = min(float(allowed), float(budget)) if budget else float(allowed)
    duties = [effective(spec).cpu_duty or 0.0 for spec in scenario.bubble_set]
    # a rate-held bubble takes what its rate needs, a command co-runner what its program does: unknown here
    unknown = any(effective(s).rate_mb_s is not None or s.kind == "command" for s in scenario.bubble_set)
    return {"cores": cores, "duty_per_set": float(sum(duties)), "demand_unknown": unknown,
            "size_sweep_count": scenario.sweep.count if scenario.sweep.axis == "size_mb" else None}  # fmt: skip


def bubble_duties(scenario: Scenario) -> list[float]:
    """The cores each bubble asks for, in the order bubbles start, at the point with the most (``pack``'s
    input). A rate-held bubble or a command co-runner may take a whole core, so it counts as one."""
    most = max((scenario.pressure_at(v) for v in scenario.sweep.values), key=len, default=[])  # effective specs
    return [1.0 if spec.kind == "command" or spec.rate_mb_s is not None or spec.cpu_duty is None
            else float(spec.cpu_duty) for spec, _ in most]  # fmt: skip


def new_manifest(scenario: Scenario, given: dict[str, Any]) -> Manifest:
    env = environment.collect()
    return Manifest(
        name=scenario.name,
        started_epoch=time.time(),
        scenario_given=given,
        scenario_effective=scenario.model_dump(mode="json"),
        plan=plan_points(scenario),
        steps=step_entries(scenario),
        workloads=[spec.label or spec.kind for spec in scenario.specs],
        settings=list(dict.fromkeys(s.setting for s in all_steps(scenario))),
        placement=scenario.placement,
        environment=env,
        telemetry_columns=telemetry.columns(),
        environment_warnings=environment.warnings(env),
        statistics=stats.METHOD,
    )


def step_entries(scenario: Scenario) -> list[StepEntry]:
    """The steps of one point, as the manifest records them."""
    return [StepEntry(workload=s.workload, setting=s.setting, warmup=s.warmup, inferences=s.inferences)
            for s in all_steps(scenario)]  # fmt: skip


def cpu_assignment(scenario: Scenario) -> CpuAssignment:
    """Which CPUs the worker and each bubble get on this machine (``cpus.placement``)."""
    return assign(scenario.cpus.placement, scenario.cpus.workload, allowed_cpus(), bubble_duties(scenario))


def resume_differences(recorded: Manifest, scenario: Scenario) -> list[str]:
    """What would differ if the run were resumed here: the scenario as this machine resolves it (``N llc``
    values, a cache bubble's size, ``settings: all``), its steps, the CPUs it may use and where bubbles sit,
    each against what the run recorded when it began. Empty: the points measured here join the others."""
    here = {
        "scenario": scenario.model_dump(mode="json"),
        "steps": [s.model_dump(mode="json") for s in step_entries(scenario)],
        "cpus": cpu_assignment(scenario).describe(),
        "cores": cpu_demand(scenario, len(allowed_cpus()))["cores"],
    }
    then = {
        "scenario": recorded.scenario_effective,
        "steps": [s.model_dump(mode="json") for s in recorded.steps],
        "cpus": recorded.cpu_placement,
        "cores": (recorded.cpu_demand or {}).get("cores"),
    }
    return _differences(then, here)


def _differences(then: Any, here: Any) -> list[str]:
    """``path: recorded vs here`` for each leaf that differs; a key the recorded side lacks (written by an
    older version, before that field existed) or records as None is not a difference."""
    return [f"{path}: {_short(was)} recorded, {_short(now)} here"
            for path, was, now in leaf_pairs(then, here, item="{}[{}]") if was is not None and was != now]


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def calibration_facts(scenario: Scenario, path: Path | None) -> dict[str, Any]:
    """Which calibration this run relies on, and its warnings for the bubble kinds the scenario uses."""
    from bubbleup.machine import calibrate

    if path is None:
        return {"path": None, "warnings": [], "note": "no calibration found (run 'bubbleup calibrate')"}
    cal = calibrate.load(path)
    kinds = {b.kind for b in scenario.bubble_set}
    return {"path": str(path), "created_at": cal.get("created_at"), "host": cal.get("host"),
            "warnings": calibrate.warnings_for(cal, kinds)}  # fmt: skip
