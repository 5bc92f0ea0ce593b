"""Which CPUs the worker and each bubble may run on: a deliberate, recorded choice, not the scheduler's.

- ``free``: nothing is pinned; the scheduler places every thread (what bubbleup did before placements).
- ``spread``: bubble *i* is pinned to the *i*-th allowed CPU, round-robin, so each CPU's load is known
  at every count; the worker is pinned to ``workload`` when given, else free.
- ``apart``: the worker is pinned to ``workload`` (default: the first half of the allowed CPUs, at
  least one) and the bubbles round-robin over the *other* CPUs: memory-subsystem pressure without
  time-sharing a CPU, as in Bubble-Up's own experiments. Refused when no CPU is left for bubbles.

Pure: this module decides; ``procs.spawn_child`` applies the decision to each child by PID.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Placement = Literal["free", "spread", "apart"]


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask, which a container or cgroup may narrow)."""
    return tuple(sorted(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class CpuAssignment:
    placement: Placement
    workload: tuple[int, ...] | None  # None: not pinned
    bubble_cpus: tuple[int, ...] | None  # bubbles round-robin over these; None: not pinned

    def for_bubble(self, index: int) -> tuple[int, ...] | None:
        if not self.bubble_cpus:
            return None
        return (self.bubble_cpus[index % len(self.bubble_cpus)],)

    def describe(self) -> dict[str, object]:
        return {"placement": self.placement, "workload_cpus": list(self.workload) if self.workload else "any",
                "bubble_cpus": list(self.bubble_cpus) if self.bubble_cpus else "any"}  # fmt: skip


def _cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


def check(placement: Placement, workload: Sequence[int] | None, allowed: Sequence[int]) -> None:
    """Raise ``ValueError("FIELD: problem")`` (a field of the scenario's ``cpus``) for a placement not possible here."""
    if workload is not None:
        if not workload:
            raise ValueError("workload: must name at least one CPU")
        if len(set(workload)) != len(workload):
            raise ValueError("workload: names a CPU twice")
        outside = sorted(set(workload) - set(allowed))
        if outside:
            raise ValueError(f"workload: CPU {_cpu_list(outside)} is not among the CPUs allowed here "
                             f"({_cpu_list(allowed)})")  # fmt: skip
    if placement == "apart":
        spare = set(allowed) - set(workload if workload is not None else default_workload(allowed))
        if not spare:
            raise ValueError(f"placement: 'apart' needs a CPU the workload does not use; the workload has "
                             f"every allowed CPU ({_cpu_list(allowed)})")  # fmt: skip


def default_workload(allowed: Sequence[int]) -> tuple[int, ...]:
    """``apart``'s default workload CPUs: the first half of the allowed ones (rounded up), at least one."""
    return tuple(allowed[: max(1, (len(allowed) + 1) // 2)]) if len(allowed) > 1 else tuple(allowed)


def assign(placement: Placement, workload: Sequence[int] | None, allowed: Sequence[int]) -> CpuAssignment:
    check(placement, workload, allowed)
    pinned = tuple(workload) if workload is not None else None
    if placement == "free":
        return CpuAssignment("free", pinned, None)
    if placement == "spread":
        return CpuAssignment("spread", pinned, tuple(allowed))
    pinned = pinned if pinned is not None else default_workload(allowed)
    return CpuAssignment("apart", pinned, tuple(c for c in allowed if c not in pinned))
