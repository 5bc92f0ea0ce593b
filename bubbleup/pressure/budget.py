"""Device budgets: run the workload and its bubbles inside a cgroup sized like the target device.

Why: a bubble-size sweep on a 24 GiB host never reaches the memory cliff an
8 GiB Jetson TX2 hits; the host would have to run out of its own memory first,
taking the orchestrator and everything else with it. Inside a memory cgroup
the cliff (reclaim, major faults, then the OOM killer) happens at the
device's size, inside the group only, while the orchestrator, which never
joins the group, keeps measuring and records the point as failed.

How it is used (the orchestrator stays *outside*; only its children join)::

    with Budget(memory_mb=1024, cpus=6) as budget:        # or Budget.from_spec(BudgetSpec.parse("jetson-tx2"))
        # any command, joined before exec (the interpreter's own pages are charged too):
        proc = subprocess.Popen(budget.wrap([sys.executable, "-m", "bubbleup.pressure.kernel", ...]))
        ...
        point_stats = budget.stats()                       # memory peak, OOM kills, major faults, throttling
    # close(): SIGKILL whatever is still inside (by PID), then rmdir every cgroup created

Where the groups go and why:

* cgroup v1 (one hierarchy per controller, as on our 2-core machines): one group per hierarchy that
  holds a needed controller (``memory`` for ``memory_mb``, ``cpu`` for ``cpus``), created as a child of
  this process's own cgroup there, so any limit that already applies to us still applies.
* cgroup v2 (unified; the usual case on a user's machine): one group, created *beside* this process's
  own cgroup (in its parent), because v2 forbids enabling controllers for the children of a cgroup
  that has processes in it (the "no internal processes" rule); the hierarchy's top is tried next.
  A controller missing from the parent's ``cgroup.subtree_control`` is switched on there and switched
  off again at ``close()`` if no other bubbleup group still needs it.
* Mixed ("hybrid") machines: each controller is used where it is bound (v1 first, then v2).
* Names are ``bubbleup-<orchestrator pid>-<n>``, so ``sweep_stale()`` can tell a leftover of a
  SIGKILLed orchestrator (its PID is gone) from a live run's group.

OOM policy: the kernel's OOM killer acts inside the group only and kills one victim per OOM, the
largest process there (v1: ``memory.oom_control`` keeps ``oom_kill_disable 0``; v2:
``memory.oom.group = 0``). Killing the whole group instead (oom.group = 1) would hide *which* process
the device would have lost; the orchestrator sees the victim's exit (-9) and ``stats()["oom_kills"]``.

What is charged: a page is charged to the cgroup of the process that first touches it, and charges do
not move when a process moves; ``wrap()`` joins before ``exec``, so nothing a child touches is charged
outside.

Scheduling: a ``cpu`` limit puts the group's processes in a task group of their own, and the kernel's
session autogroups apply only to tasks in the root task group: inside a cpu-limited budget every
*thread* competes as an equal, whatever session it is in. ``describe()["autogroup_inside"]`` records
which case a run was in. A ``cpus`` value at or above the host's cores is therefore not applied at
all (it would limit nothing and only change how contention is shared); it is recorded as capped.

The pure spec a scenario holds is :mod:`bubbleup.pressure.budget_spec`; the cgroup file mechanics are
:mod:`bubbleup.pressure.cgroups`; removing leftovers of a killed run is :mod:`bubbleup.pressure.stale`.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bubbleup.pressure.budget_spec import CPU_PERIOD_US, MIB, MIN_QUOTA_US, BudgetSpec
from bubbleup.pressure.cgroups import (
    PREFIX,
    BudgetUnavailable,
    Hierarchy,
    enable_controllers,
    explain,
    hierarchies,
    host_cores,
    kill_members,
    limit_writes,
    members,
    plan_controllers,
    read_file,
    read_int,
    read_kv,
    read_pressure,
    restore_controllers,
    rmdir_group,
    v2_candidates,
    write_file,
)

WRAP_JOIN_FAILED = 125  # exit status of a wrap()-ed command that could not join its budget


_counter = itertools.count()
_counter_lock = threading.Lock()


class BudgetCleanupError(RuntimeError):
    """``close()`` could not remove every cgroup it created (a process would not die in time).

    The message names the groups and PIDs; ``sweep_stale()`` removes the groups once they are empty.
    """




@dataclass
class _Group:
    hierarchy: Hierarchy
    path: Path
    controllers: frozenset[str]
    #: v2 controllers this budget switched on in the parent's subtree_control (switched off again at close).
    enabled_in_parent: tuple[str, ...] = ()


@dataclass
class _State:
    groups: list[_Group] = field(default_factory=list)
    phase: str = "new"  # new -> applied -> closed
    effective: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    final_stats: dict[str, Any] | None = None


_OPEN: set[Budget] = set()
_OPEN_LOCK = threading.Lock()


class Budget:
    """A memory and/or CPU limit that the workload and its bubbles run under, as one cgroup per hierarchy.

    A context manager: ``__enter__`` applies, ``__exit__`` closes, also on an exception. An interpreter exit
    without ``close()`` still closes (atexit); only a SIGKILLed orchestrator leaves groups behind, which
    ``sweep_stale()`` removes at the next start.
    """

    def __init__(self, memory_mb: int | None = None, cpus: float | None = None, swap: bool = False,
                 *, preset: str | None = None) -> None:  # fmt: skip
        self.spec = BudgetSpec(memory_mb=memory_mb, cpus=cpus, swap=swap, preset=preset)
        self._state = _State()
        self._lock = threading.RLock()
        self._owner_pid = os.getpid()

    @classmethod
    def from_spec(cls, spec: BudgetSpec) -> Budget:
        return cls(spec.memory_mb, spec.cpus, spec.swap, preset=spec.preset)

    def __repr__(self) -> str:
        paths = ", ".join(str(g.path) for g in self._state.groups)
        return f"Budget(memory_mb={self.spec.memory_mb}, cpus={self.spec.cpus}, {self._state.phase}: [{paths}])"

    def __enter__(self) -> Budget:
        self.apply()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- applying -------------------------------------------------------------------------------------------

    def apply(self) -> None:
        """Create the group(s) and write the limits; ``BudgetUnavailable`` (and nothing left behind) if not possible."""
        with self._lock:
            if self._state.phase != "new":
                raise RuntimeError(f"a budget is applied once; this one is {self._state.phase}")
            host = host_cores()
            quota_us: int | None = None
            notes = self._state.notes
            if self.spec.cpus is not None:
                if self.spec.cpus >= host:
                    notes.append(f"cpus {self.spec.cpus:g} requested, host has {host}: no CPU limit applied")
                else:
                    quota_us = max(MIN_QUOTA_US, round(self.spec.cpus * CPU_PERIOD_US))
            memory_bytes = self.spec.memory_mb * MIB if self.spec.memory_mb is not None else None
            needed = ({"memory"} if memory_bytes is not None else set()) | ({"cpu"} if quota_us is not None else set())
            plan = plan_controllers(hierarchies(), needed)
            name = f"{PREFIX}{os.getpid()}-{_next_number()}"
            self._state.phase = "applied"  # from here on close() has something to undo
            with _OPEN_LOCK:
                _OPEN.add(self)
            try:
                for h, controllers in plan.items():
                    self._state.groups.append(_create(h, controllers, name))
                for g in self._state.groups:
                    self._write_limits(g, memory_bytes, quota_us)
                self._record_effective(host, quota_us)
            except BaseException:
                with contextlib.suppress(BudgetCleanupError):
                    self.close()
                raise

    def _write_limits(self, g: _Group, memory_bytes: int | None, quota_us: int | None) -> None:
        mem = memory_bytes if "memory" in g.controllers else None
        quota = quota_us if "cpu" in g.controllers else None
        for fname, value, required in limit_writes(g.hierarchy.version, mem, quota, self.spec.swap):
            path = g.path / fname
            if not required and not path.exists():
                continue
            try:
                write_file(path, value)
            except OSError as exc:
                if required:
                    raise explain(exc, f"write {value} to", path) from exc
                self._state.notes.append(f"could not write {value} to {path}: {exc.strerror}")
        if g.hierarchy.version == 1 and mem is not None:
            # v1 children inherit oom_kill_disable from their parent; with it set, processes would hang at the
            # limit instead of one being killed. Written only when needed: the file is deprecated and warns.
            if read_kv(g.path / "memory.oom_control").get("oom_kill_disable") == 1:
                try:
                    write_file(g.path / "memory.oom_control", "0")
                except OSError as exc:
                    raise explain(exc, "enable the OOM killer in", g.path / "memory.oom_control") from exc

    def _record_effective(self, host: int, quota_us: int | None) -> None:
        eff = self._state.effective
        notes = self._state.notes
        eff["host_cores"] = host
        eff["cpus_effective"] = quota_us / CPU_PERIOD_US if quota_us is not None else float(host)
        eff["cpu_quota_us"] = quota_us
        eff["cpu_period_us"] = CPU_PERIOD_US if quota_us is not None else None
        mem = self._group("memory")
        eff["memory_limit_mb"] = eff["memory_ceiling_mb"] = eff["swap_limited"] = None
        if mem is not None:
            v2 = mem.hierarchy.version == 2
            limit = read_int(mem.path / ("memory.max" if v2 else "memory.limit_in_bytes"))
            eff["memory_limit_mb"] = limit / MIB if limit is not None else None
            ceiling = [x for x in (limit, *_ancestor_limits(mem), psutil.virtual_memory().total) if x is not None]
            eff["memory_ceiling_mb"] = min(ceiling) / MIB
            if limit is not None and min(ceiling) < limit:
                notes.append(
                    f"memory below the budget: an enclosing cgroup or the host allows {min(ceiling) / MIB:.0f} MiB"
                )
            swap_file = mem.path / ("memory.swap.max" if v2 else "memory.memsw.limit_in_bytes")
            eff["swap_limited"] = (not self.spec.swap) and swap_file.exists()
            host_swap = psutil.swap_memory().total
            if not self.spec.swap and not swap_file.exists() and host_swap:
                notes.append("swap is not accounted per cgroup here: the group may swap although swap=false")
            if self.spec.swap and not host_swap:
                notes.append("swap allowed but the host has none: the memory cliff is an OOM wall, not a slope")
        eff["autogroup_inside"] = self._autogroup_inside()
        if eff["autogroup_inside"] is False:
            notes.append(
                "inside the budget the kernel's session autogroups do not apply: every thread competes equally"
            )

    def _group(self, controller: str) -> _Group | None:
        return next((g for g in self._state.groups if controller in g.controllers), None)

    def _autogroup_inside(self) -> bool | None:
        """Whether the members' CPU time is shared by session autogroups (only in the root task group)."""
        if (read_file(Path("/proc/sys/kernel/sched_autogroup_enabled")) or "0") != "1":
            return False
        if self._group("cpu") is not None:
            return False
        v2 = next((g for g in self._state.groups if g.hierarchy.version == 2), None)
        if v2 is not None:
            node = v2.path
            while node != v2.hierarchy.mount and v2.hierarchy.mount in node.parents:
                if "cpu" in (read_file(node / "cgroup.controllers") or "").split():
                    return False
                node = node.parent
            if "cpu" in v2.hierarchy.controllers:
                return True
        cpu_v1 = next((h for h in hierarchies() if h.version == 1 and "cpu" in h.controllers), None)
        if cpu_v1 is not None:
            return cpu_v1.own == cpu_v1.mount
        return None

    # -- what children need --------------------------------------------------------------------------------

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a child writes its own PID into (one per hierarchy)."""
        with self._lock:
            if self._state.phase != "applied":
                raise RuntimeError(f"budget is {self._state.phase}: apply() it first")
            return [str(g.path / "cgroup.procs") for g in self._state.groups]

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed so the process joins the budget before ``exec``: nothing it touches is charged outside.

        Uses ``/bin/sh`` (``echo $$ > cgroup.procs; exec "$@"``); the PID stays the same, so Popen and
        psutil see the real command. Exits with status 125 if joining fails (sh names the file on stderr).
        Every child the harness starts into a budget (worker, bubbles, stress-ng, commands) goes this way.
        """
        files = self.procs_files()
        script = (
            'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit ' + str(WRAP_JOIN_FAILED) + "; "
            'shift; n=$((n - 1)); done; exec "$@"'
        )
        return ["/bin/sh", "-c", script, "bubbleup-join", str(len(files)), *files, *argv]

    def pids(self) -> list[int]:
        """The processes inside the budget now."""
        with self._lock:
            return sorted(members(g.path for g in self._state.groups)) if self._state.phase == "applied" else []

    # -- measuring ------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """What the budget did so far: memory now and at peak, OOM kills, limit hits, major faults, CPU throttling.

        Keys are always present (None where this kernel or cgroup version does not tell). After ``close()``
        the last values read before the groups were removed.
        """
        with self._lock:
            if self._state.phase == "closed" and self._state.final_stats is not None:
                return dict(self._state.final_stats)
            if self._state.phase != "applied":
                raise RuntimeError(f"budget is {self._state.phase}: no statistics")
            return self._collect()

    def _collect(self) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(
            ("memory_current_mb", "memory_peak_mb", "memory_anon_mb", "memory_file_mb", "oom_kills", "oom_events",
             "limit_hits", "major_faults", "memory_pressure_some_s", "memory_pressure_full_s", "cpu_usage_s",
             "cpu_throttled_periods", "cpu_throttled_s"))  # fmt: skip
        mem = self._group("memory")
        if mem is not None and mem.hierarchy.version == 2:
            p = mem.path
            current, peak = read_int(p / "memory.current"), read_int(p / "memory.peak")
            events, stat = read_kv(p / "memory.events"), read_kv(p / "memory.stat")
            out.update(
                memory_current_mb=current / MIB if current is not None else None,
                memory_peak_mb=peak / MIB if peak is not None else None,
                memory_anon_mb=stat["anon"] / MIB if "anon" in stat else None,
                memory_file_mb=stat["file"] / MIB if "file" in stat else None,
                oom_kills=events.get("oom_kill"),
                oom_events=events.get("oom"),
                limit_hits=events.get("max"),
                major_faults=stat.get("pgmajfault"),
            )
        elif mem is not None:
            p = mem.path
            current, peak = read_int(p / "memory.usage_in_bytes"), read_int(p / "memory.max_usage_in_bytes")
            stat, oom = read_kv(p / "memory.stat"), read_kv(p / "memory.oom_control")
            anon, cache = stat.get("total_rss", stat.get("rss")), stat.get("total_cache", stat.get("cache"))
            out.update(
                memory_current_mb=current / MIB if current is not None else None,
                memory_peak_mb=peak / MIB if peak is not None else None,
                memory_anon_mb=anon / MIB if anon is not None else None,
                memory_file_mb=cache / MIB if cache is not None else None,
                oom_kills=oom.get("oom_kill"),
                oom_events=None,  # v1 counts kills only (and notifies OOMs through eventfd, which we do not hold)
                limit_hits=read_int(p / "memory.failcnt"),
                major_faults=stat.get("total_pgmajfault", stat.get("pgmajfault")),
            )
        for g in self._state.groups:
            if g.hierarchy.version == 2:
                psi = read_pressure(g.path / "memory.pressure")
                out.update(memory_pressure_some_s=psi.get("some"), memory_pressure_full_s=psi.get("full"))
                cpu = read_kv(g.path / "cpu.stat")  # core file: present even without the cpu controller
                if "usage_usec" in cpu:
                    out["cpu_usage_s"] = cpu["usage_usec"] / 1e6
                if "nr_throttled" in cpu:
                    out["cpu_throttled_periods"] = cpu["nr_throttled"]
                    out["cpu_throttled_s"] = cpu.get("throttled_usec", 0) / 1e6
            elif "cpu" in g.controllers:
                cpu = read_kv(g.path / "cpu.stat")
                out["cpu_throttled_periods"] = cpu.get("nr_throttled")
                out["cpu_throttled_s"] = cpu["throttled_time"] / 1e9 if "throttled_time" in cpu else None
                usage = read_int(g.path / "cpuacct.usage")  # only where cpu and cpuacct share a hierarchy
                if usage is not None:
                    out["cpu_usage_s"] = usage / 1e9
        out["pids"] = sorted(members(g.path for g in self._state.groups))
        return out

    def describe(self) -> dict[str, Any]:
        """Requested and effective values, where the groups are, and the policies, for the run's manifest."""
        with self._lock:
            versions = {g.hierarchy.version for g in self._state.groups}
            return {
                **self.spec.to_dict(),
                "cgroup_version": versions.pop() if len(versions) == 1 else ("mixed" if versions else None),
                "groups": {",".join(sorted(g.controllers)) or "none": str(g.path) for g in self._state.groups},
                **self._state.effective,
                "oom_policy": "kernel OOM killer inside the group only, one victim (the largest) per OOM "
                "(v1 oom_kill_disable=0, v2 memory.oom.group=0)",
                "state": self._state.phase,
                "notes": list(self._state.notes),
            }

    # -- closing --------------------------------------------------------------------------------------------

    def close(self, timeout_s: float = 5.0) -> None:
        """SIGKILL (by PID) every process still inside, wait for them to leave, remove every group created.

        Idempotent, and safe after an exception anywhere (including a half-done ``apply()``). Raises
        ``BudgetCleanupError`` if a group could not be removed by ``timeout_s``; calling again retries.
        """
        with self._lock:
            if self._state.phase != "applied":
                self._state.phase = "closed"
                return
            dirs = [g.path for g in self._state.groups]
            if os.getpid() in members(dirs):  # never kill ourselves: step back out first
                for g in self._state.groups:
                    with contextlib.suppress(OSError):
                        write_file(g.hierarchy.own / "cgroup.procs", str(os.getpid()))
            left = kill_members(dirs, timeout_s)
            with contextlib.suppress(OSError):
                self._state.final_stats = self._collect()
            deadline = time.monotonic() + max(1.0, timeout_s / 2)
            failures: list[str] = []
            remaining: list[_Group] = []
            for g in self._state.groups:
                why = rmdir_group(g.path, deadline)
                if why is None:
                    restore_controllers(g.path.parent, g.enabled_in_parent)
                else:
                    failures.append(why)
                    remaining.append(g)
            self._state.groups = remaining
            if failures:
                still = f"; still inside: {sorted(left)}" if left else ""
                raise BudgetCleanupError(
                    f"could not remove {'; '.join(failures)}{still} (sweep_stale() removes them once empty)"
                )
            self._state.phase = "closed"
            with _OPEN_LOCK:
                _OPEN.discard(self)


def _next_number() -> int:
    with _counter_lock:
        return next(_counter)


def _create(h: Hierarchy, controllers: frozenset[str], name: str) -> _Group:
    """Create one group in ``h`` for ``controllers``: a child of our own cgroup (v1), beside it (v2)."""
    if h.version == 1:
        try:
            os.mkdir(h.own / name)
        except OSError as exc:
            raise explain(exc, "create a cgroup in", h.own) from exc
        return _Group(h, h.own / name, controllers)
    reasons: list[str] = []
    for parent in v2_candidates(h):
        try:
            enabled = enable_controllers(parent, controllers)
        except BudgetUnavailable as exc:
            reasons.append(str(exc))
            continue
        try:
            os.mkdir(parent / name)
        except OSError as exc:
            restore_controllers(parent, enabled)
            reasons.append(str(explain(exc, "create a cgroup in", parent)))
            continue
        return _Group(h, parent / name, controllers, enabled)
    raise BudgetUnavailable("; ".join(reasons))


def _ancestor_limits(g: _Group) -> Iterator[int]:
    """Memory limits of the cgroups enclosing ``g`` (they bound it whatever the budget says)."""
    fname = "memory.max" if g.hierarchy.version == 2 else "memory.limit_in_bytes"
    node = g.path.parent
    while node == g.hierarchy.mount or g.hierarchy.mount in node.parents:
        value = read_int(node / fname)
        if value is not None and value < (1 << 62):  # v1 says "unlimited" with a huge number
            yield value
        if node == g.hierarchy.mount:
            break
        node = node.parent


@atexit.register
def _close_open_budgets() -> None:
    """Close budgets a crashed or careless orchestrator left open; never in a forked child (not its groups)."""
    with _OPEN_LOCK:
        budgets = [b for b in _OPEN if b._owner_pid == os.getpid()]
    for b in budgets:
        try:
            b.close()
        except Exception as exc:  # at exit there is no one left to raise to
            print(f"bubbleup: {exc}", file=sys.stderr)


def availability(memory: bool = True, cpu: bool = True) -> tuple[bool, str]:
    """Can budgets be applied here? ``(True, where)`` or ``(False, why)``.

    Tries for real (creates, limits and removes a probe group): permissions, read-only mounts and
    delegation only show when one writes.
    """
    probe = Budget(memory_mb=64 if memory else None, cpus=min(0.5, host_cores() / 2) if cpu else None)
    try:
        probe.apply()
        info = probe.describe()
        probe.close()
    except (BudgetUnavailable, BudgetCleanupError) as exc:
        return False, str(exc)
    where = ", ".join(f"{k} under {Path(v).parent}" for k, v in info["groups"].items())
    return True, f"cgroup v{info['cgroup_version']}: {where}"
