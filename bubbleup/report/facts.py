"""The report's facts table: what was run, in a few lines (workload, sweep, repeats, CPUs, bubbles, counts)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bubbleup.formatting import format_value, pressure
from bubbleup.store.manifest import LISTED_ONLY
from bubbleup.store.reader import Run


def run_facts(run: Run, summary: pd.DataFrame) -> list[tuple[str, str]]:
    eff = run.effective
    workload = eff.get("workload") or {}
    sweep = eff.get("sweep") or {}
    bubbles = [run.bubble] if run.bubble else list(eff.get("bubbles") or [])  # one kind, or a set of kinds
    values = sweep.get("values") or run.values
    timed = int(summary["n"].sum()) if len(summary) else 0
    facts = [
        ("workload", ", ".join(run.workloads) or str(workload.get("kind", "?"))),
        ("settings", ", ".join(run.settings) or "-"),
        ("sweep", sweep_fact(run.axis, sweep, values, run.set_size)),
        ("repeats", repeats_fact(run, sweep)),
        ("CPUs", cpus_fact(run)),
        (
            "bubble" if len(bubbles) < 2 else "bubbles (a set)",
            "; ".join(", ".join(f"{k} {v}" for k, v in b.items()) for b in bubbles) or "-",
        ),
        ("timed inferences", str(timed)),
        ("started / finished", f"{run.manifest.started_at or '-'} / {run.manifest.finished_at or '-'}"),
    ]
    return facts


def sweep_fact(axis: str, sweep: dict[str, Any], values: list[Any], set_size: int = 1) -> str:
    """What the run swept, in its own terms: counts, sizes, or a schedule's phases (whose one value, 0, is no
    pressure of its own)."""
    if axis == "schedule":
        phases = sweep.get("phases") or []
        return "schedule: " + " then ".join(f"{pressure(float(p.get('bubbles', 0)), 'count', set_size)} for "
                                            f"{float(p.get('seconds', 0)):g} s" for p in phases)  # fmt: skip
    what = "bubble count" if axis == "count" else "bubble size (MiB)"
    return f"{what}: {', '.join(format_value(float(v), axis, unit=False) for v in values)}"


def repeats_fact(run: Run, sweep: dict[str, Any]) -> str:
    """``3`` or, with sweep.replication, how many more repeats which points got."""
    planned = str(sweep.get("repeats", "-"))
    rule = sweep.get("replication")
    if not rule:
        return planned
    extra = len(run.manifest.plan) - int(sweep.get("repeats") or 0) * len(sweep.get("values") or run.values or [])
    steps = sum(len(r.get("points") or []) for r in run.manifest.replication if r.get(LISTED_ONLY))
    return (f"{planned}, then up to {rule.get('max_repeats')} where the repeats disagreed beyond "
            f"+/-{float(rule.get('target') or 0):.1%}: {extra} more point-repeat(s)"
            + (f" of {steps} step(s) in all" if steps else ""))  # fmt: skip


def cpus_fact(run: Run) -> str:
    """Where the worker and the bubbles ran (manifest cpu_placement)."""
    c = run.manifest.cpu_placement or {}
    if not c:
        return "-"

    def listed(cpus: Any) -> str:
        return "any CPU" if cpus in (None, "any") else "CPU " + ", ".join(str(x) for x in cpus)

    cpus = c.get("bubble_cpus")
    if cpus in (None, "any"):
        bubbles = "bubbles on any CPU"
    elif c.get("placement") == "pack":
        bubbles = f"bubbles 1-{len(cpus)} on {listed(cpus)}, in order"
    else:
        bubbles = f"bubbles round-robin over {listed(cpus)}"
    return f"{c.get('placement')}: the worker on {listed(c.get('workload_cpus'))}, {bubbles}"
