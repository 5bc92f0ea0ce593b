"""Which CPUs the worker and each bubble may run on: a deliberate, recorded choice, not the scheduler's.

- ``free``: nothing is pinned; the scheduler places every thread (what bubbleup did before placements).
- ``spread``: bubble *i* is pinned to the *i*-th allowed CPU, round-robin, so each CPU's load is known
  at every count; the worker is pinned to ``workload`` when given, else free.
- ``apart``: the worker is pinned to ``workload`` (default: the first half of the allowed CPUs, at
  least one) and the bubbles round-robin over the *other* CPUs: memory-subsystem pressure without
  time-sharing a CPU, as in Bubble-Up's own experiments. Refused when no CPU is left for bubbles.
- ``pack``: the worker is pinned as for ``apart``; each bubble, in order, goes to a CPU the workload does
  not use while one has room for its duty (up to one core per CPU), and once none has, to the workload's
  CPU with the least bubble duty. The CPU of bubble *i* is the same at every count, so the count at
  which pressure reaches the workload is the one CPU-demand arithmetic predicts, every repeat, instead
  of whenever the load balancer moves a bubble (``free``). Works with no CPU to spare (every bubble then
  shares the workload's CPUs).

Pure: this module decides; ``procs.spawn_child`` applies the decision to each child by PID.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Placement = Literal["free", "spread", "apart", "pack"]


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask, which a container or cgroup may narrow)."""
    return tuple(sorted(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class CpuAssignment:
    placement: Placement
    workload: tuple[int, ...] | None  # None: not pinned
    bubble_cpus: tuple[int, ...] | None  # bubble i on the i-th, round-robin; None: not pinned

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


def packed(duties: Sequence[float], workload: Sequence[int], allowed: Sequence[int]) -> tuple[int, ...]:
    """``pack``'s CPU for each bubble, in order: first fit by duty on the CPUs the workload leaves, then the
    workload's CPU carrying the least bubble duty (the first such on a tie)."""
    load = dict.fromkeys(allowed, 0.0)
    spare = [c for c in allowed if c not in workload]
    out = []
    for duty in duties:
        fits = [c for c in spare if load[c] + duty <= 1.0 + 1e-9]
        cpu = fits[0] if fits else min(workload, key=lambda c: load[c])
        load[cpu] += duty
        out.append(cpu)
    return tuple(out)


def assign(placement: Placement, workload: Sequence[int] | None, allowed: Sequence[int],
           duties: Sequence[float] = ()) -> CpuAssignment:  # fmt: skip
    """The CPUs of the worker and of each bubble; ``duties`` (cores each bubble asks for, in the order bubbles
    start, at the point with the most) matter only to ``pack``."""
    check(placement, workload, allowed)
    pinned = tuple(workload) if workload is not None else None
    if placement == "free":
        return CpuAssignment("free", pinned, None)
    if placement == "spread":
        return CpuAssignment("spread", pinned, tuple(allowed))
    pinned = pinned if pinned is not None else default_workload(allowed)
    if placement == "pack":
        return CpuAssignment("pack", pinned, packed(duties, pinned, allowed) or None)
    return CpuAssignment("apart", pinned, tuple(c for c in allowed if c not in pinned))
