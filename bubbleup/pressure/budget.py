"""Device budgets: run the workload and its bubbles inside a cgroup sized like the target device.

Why: a bubble-size sweep on a 24 GiB host never reaches the memory cliff an
8 GiB Jetson TX2 hits; the host would have to run out of its own memory first,
taking the orchestrator and everything else with it. Inside a memory cgroup
the cliff (reclaim, major faults, then the OOM killer) happens at the
device's size, inside the group only, while the orchestrator, which never
joins the group, keeps measuring and records the point as failed.

How it is used (the orchestrator stays *outside*; only its children join)::

    with Budget(memory_mb=1024, cpus=6) as budget:        # or Budget.from_spec(BudgetSpec.parse("jetson-tx2"))
        env = {**os.environ, **budget.env()}               # children call join_from_env() first thing
        proc = subprocess.Popen([sys.executable, "-m", "bubbleup.pressure.kernel", ...], env=env)
        # or, for any command, joined before exec (the interpreter's own pages are charged too):
        proc = subprocess.Popen(budget.wrap([sys.executable, "-m", ...]))
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
not move when a process moves. A child that joins as its first statement still leaves its interpreter
start-up (about 10 MiB) charged outside; ``wrap()`` joins before ``exec`` and leaves nothing outside.

Scheduling: a ``cpu`` limit puts the group's processes in a task group of their own, and the kernel's
session autogroups apply only to tasks in the root task group: inside a cpu-limited budget every
*thread* competes as an equal, whatever session it is in. ``describe()["autogroup_inside"]`` records
which case a run was in. A ``cpus`` value at or above the host's cores is therefore not applied at
all (it would limit nothing and only change how contention is shared); it is recorded as capped.

Imports only the standard library and psutil: bubble and worker processes import this module to call
``join_from_env()`` before anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "ENV_VAR",
    "PRESETS",
    "Budget",
    "BudgetCleanupError",
    "BudgetSpec",
    "BudgetUnavailable",
    "Hierarchy",
    "SweepResult",
    "availability",
    "find_groups",
    "hierarchies",
    "join",
    "join_from_env",
    "limit_writes",
    "sweep_stale",
]

MIB = 1 << 20
#: Children read the ``cgroup.procs`` files to join from here (``os.pathsep``-joined) and call ``join()``.
ENV_VAR = "BUBBLEUP_CGROUP_PROCS"
PREFIX = "bubbleup-"
#: The CFS period; 100 ms is the kernel default, so a quota reads like ``cpus`` cores per 100 ms.
CPU_PERIOD_US = 100_000
#: The kernel refuses quotas under 1 ms.
_MIN_QUOTA_US = 1_000
#: Below this a Python child cannot even start; a budget this small is a typo.
MIN_MEMORY_MB = 16
#: Exit status of a ``wrap()``-ed command that could not join its budget.
WRAP_JOIN_FAILED = 125

_NAME_RE = re.compile(r"^bubbleup-(\d+)-(\d+)$")
_counter = itertools.count()
_counter_lock = threading.Lock()


class BudgetUnavailable(Exception):
    """The budget cannot be applied here; the message says why in one line (not root, no delegation, ...)."""


class BudgetCleanupError(RuntimeError):
    """``close()`` could not remove every cgroup it created (a process would not die in time).

    The message names the groups and PIDs; ``sweep_stale()`` removes the groups once they are empty.
    """


# ---------------------------------------------------------------------------------------------------------
# What a scenario asks for
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetSpec:
    """A budget as plain, validated data (what a scenario says), before any cgroup is touched.

    ``memory_mb`` is the memory the group may use (MiB, 2**20 bytes), page cache included; ``cpus`` is a
    CPU-time quota in cores (0.5 = half of one core per period, spread over any cores), capped at the host's
    cores when applied; ``swap`` allows the group to swap (if the host has swap) instead of going straight to
    the OOM killer.
    """

    memory_mb: int | None = None
    cpus: float | None = None
    swap: bool = False
    #: The preset this came from, kept for the record.
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.memory_mb is not None:
            if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int):
                raise ValueError(f"budget memory_mb must be a whole number of MiB, got {self.memory_mb!r}")
            if self.memory_mb < MIN_MEMORY_MB:
                raise ValueError(f"budget memory_mb must be at least {MIN_MEMORY_MB}, got {self.memory_mb}")
        if self.cpus is not None:
            if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)):
                raise ValueError(f"budget cpus must be a number of cores, got {self.cpus!r}")
            if not self.cpus * CPU_PERIOD_US >= _MIN_QUOTA_US:  # also rejects NaN
                raise ValueError(f"budget cpus must be at least {_MIN_QUOTA_US / CPU_PERIOD_US}, got {self.cpus}")
        if not isinstance(self.swap, bool):
            raise ValueError(f"budget swap must be true or false, got {self.swap!r}")

    def scaled(self, memory_factor: float) -> BudgetSpec:
        """The same device with its memory scaled (e.g. 1/8 of a TX2 for a quick test); CPUs unchanged."""
        if self.memory_mb is None:
            return self
        return replace(self, memory_mb=max(MIN_MEMORY_MB, round(self.memory_mb * memory_factor)))

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "memory_mb": self.memory_mb, "cpus": self.cpus, "swap": self.swap}

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | BudgetSpec | None) -> BudgetSpec | None:
        """A scenario's ``budget:`` value: a preset name, or a mapping of ``preset`` / ``memory_mb`` / ``cpus`` /
        ``swap`` where explicit keys override the preset's (``{preset: jetson-tx2, memory_mb: 1024}`` is a TX2
        scaled down for a test). Unknown keys and presets raise ``ValueError`` naming what is allowed.
        """
        if value is None or isinstance(value, BudgetSpec):
            return value
        if isinstance(value, str):
            return preset(value)
        if not isinstance(value, Mapping):
            raise ValueError(f"budget must be a preset name or a mapping, got {type(value).__name__}")
        allowed = ("preset", "memory_mb", "cpus", "swap")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ValueError(f"unknown budget key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(allowed)}")
        base = preset(value["preset"]) if value.get("preset") is not None else cls()
        overrides = {k: value[k] for k in ("memory_mb", "cpus", "swap") if k in value}
        spec = replace(base, **overrides)
        if spec.memory_mb is None and spec.cpus is None:
            raise ValueError("a budget needs memory_mb, cpus or a preset")
        return spec


#: Devices a scenario can name. Memory is the board's whole RAM, which on Jetsons the GPU shares; the
#: device's own OS takes part of it (about 1 GiB under L4T with a desktop), so a budget of the full size is
#: the optimistic case. CPU counts are capped at the host's cores when applied.
PRESETS: dict[str, BudgetSpec] = {
    # NVIDIA Jetson TX2 module data sheet: 8 GB 128-bit LPDDR4 shared by CPU and GPU;
    # 2x Denver 2 + 4x Cortex-A57 = 6 cores. The device of the study this harness reproduces.
    "jetson-tx2": BudgetSpec(memory_mb=8192, cpus=6, preset="jetson-tx2"),
    # NVIDIA Jetson Nano module data sheet: 4 GB 64-bit LPDDR4 shared by CPU and GPU; 4x Cortex-A57.
    "jetson-nano": BudgetSpec(memory_mb=4096, cpus=4, preset="jetson-nano"),
    # Raspberry Pi 4 Model B product brief: BCM2711, 4x Cortex-A72; sold with 1, 2, 4 or 8 GB (4 GB here).
    "raspberry-pi-4": BudgetSpec(memory_mb=4096, cpus=4, preset="raspberry-pi-4"),
}


def preset(name: str) -> BudgetSpec:
    """The preset called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown budget preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


# ---------------------------------------------------------------------------------------------------------
# Finding the hierarchies
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy, and where this process sits in it."""

    version: int
    mount: Path
    #: v1: the controllers bound to this hierarchy; v2: those listed in the mount's ``cgroup.controllers``.
    controllers: frozenset[str]
    #: This process's cgroup directory here (the mount itself when our cgroup is not visible under it).
    own: Path


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), text)


def hierarchies(mountinfo: str = "/proc/self/mountinfo", cgroup_file: str = "/proc/self/cgroup") -> list[Hierarchy]:
    """Every cgroup hierarchy mounted here (one entry per hierarchy, bind mounts dropped)."""
    try:
        mounts = Path(mountinfo).read_text().splitlines()
        own_lines = Path(cgroup_file).read_text().splitlines()
    except OSError:
        return []
    own_v1: dict[frozenset[str], str] = {}
    own_v2 = "/"
    for line in own_lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            own_v2 = parts[2]
        else:
            own_v1[frozenset(parts[1].split(","))] = parts[2]
    out: list[Hierarchy] = []
    seen: set[str] = set()
    for line in mounts:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        device, root, mount = fields[2], _unescape(fields[3]), Path(_unescape(fields[4]))
        if device in seen:
            continue
        seen.add(device)
        if rfields[0] == "cgroup2":
            controllers = frozenset((_read(mount / "cgroup.controllers") or "").split())
            out.append(Hierarchy(2, mount, controllers, _own_dir(mount, root, own_v2)))
            continue
        options = set(rfields[2].split(","))
        own = next((p for names, p in own_v1.items() if names <= options), None)
        names = next((n for n in own_v1 if n <= options), frozenset())
        bound = frozenset(n for n in names if not n.startswith("name="))
        out.append(Hierarchy(1, mount, bound, _own_dir(mount, root, own)))
    return out


def _own_dir(mount: Path, root: str, own: str | None) -> Path:
    if own is None:
        return mount
    root = root.rstrip("/")
    if root and not (own == root or own.startswith(root + "/")):
        return mount
    rel = own[len(root) :].strip("/")
    path = mount / rel if rel else mount
    return path if path.is_dir() else mount


def _plan(hs: list[Hierarchy], needed: set[str]) -> dict[Hierarchy, frozenset[str]]:
    """Which hierarchy serves each needed controller: a v1 hierarchy where it is bound, else v2."""
    if not sys.platform.startswith("linux"):
        raise BudgetUnavailable(f"device budgets need Linux cgroups; this is {sys.platform}")
    if not hs:
        raise BudgetUnavailable("no cgroup filesystem is mounted (none in /proc/self/mountinfo)")
    v1 = {c: h for h in hs if h.version == 1 for c in h.controllers}
    v2 = next((h for h in hs if h.version == 2), None)
    plan: dict[Hierarchy, set[str]] = {}
    for c in sorted(needed):
        if c in v1:
            plan.setdefault(v1[c], set()).add(c)
        elif v2 is not None and c in v2.controllers:
            plan.setdefault(v2, set()).add(c)
        else:
            where = f"{v2.mount}/cgroup.controllers" if v2 is not None else "any cgroup2 mount"
            raise BudgetUnavailable(f"the {c} controller is missing: not in a v1 hierarchy nor in {where}")
    if not plan:  # no limits: a group only for accounting and clean-up, v2 preferred (cgroup.kill, pressure)
        h = v2 or v1.get("memory") or v1.get("cpu")
        if h is None:
            raise BudgetUnavailable("neither a cgroup2 mount nor a v1 memory or cpu hierarchy is mounted")
        plan[h] = set()
    return {h: frozenset(cs) for h, cs in plan.items()}


# ---------------------------------------------------------------------------------------------------------
# Small file helpers (cgroupfs files are tiny; errors are reported by the callers)
# ---------------------------------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:  # "max"
        return None


def _read_kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def _read_pressure(path: Path) -> dict[str, float]:
    """``some``/``full`` stall totals in seconds from a PSI file."""
    out: dict[str, float] = {}
    for line in (_read(path) or "").splitlines():
        kind, *pairs = line.split()
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key == "total":
                out[kind] = int(value) / 1e6
    return out


def _read_pids(path: Path) -> set[int]:
    text = _read(path)
    return {int(x) for x in text.split()} if text else set()


def _write(path: Path, value: str) -> None:
    # One write(2) per value: cgroupfs parses each write separately, and open(..., "w") + buffering
    # could split or merge them.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _explain(exc: OSError, action: str, path: Path) -> BudgetUnavailable:
    """Turn an OSError from cgroupfs into the one-line reason a user can act on."""
    where = f"cannot {action} {path}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        if os.geteuid() != 0:
            why = (
                f"permission denied: not root (uid {os.geteuid()}) and this cgroup is not delegated to you; run as "
                "root, or on cgroup v2 from a delegated scope (systemd-run --user --scope -p Delegate=yes ...)"
            )
        else:
            why = "permission denied even as root (a container without write access to its cgroups?)"
    elif exc.errno == errno.EROFS:
        why = "the cgroup filesystem is read-only (a container? it needs a writable cgroup mount)"
    elif exc.errno == errno.ENOENT:
        why = "no such file (the controller is not enabled here)"
    else:
        why = exc.strerror or str(exc)
    return BudgetUnavailable(f"{where}: {why}")


def limit_writes(
    version: int, memory_bytes: int | None, quota_us: int | None, swap: bool
) -> list[tuple[str, str, bool]]:
    """The files a budget writes, in order, as ``(file, value, required)``.

    Optional files are written when the kernel has them (swap accounting may be off; ``memory.oom.group``
    needs 4.19). Memory limits go before their swap limits (v1 refuses memsw below the memory limit); the
    v1 CFS period goes before the quota it is measured against.
    """
    out: list[tuple[str, str, bool]] = []
    if version == 2:
        if memory_bytes is not None:
            out.append(("memory.max", str(memory_bytes), True))
            if not swap:
                out.append(("memory.swap.max", "0", False))
            out.append(("memory.oom.group", "0", False))  # one victim per OOM, not the whole group
        if quota_us is not None:
            out.append(("cpu.max", f"{quota_us} {CPU_PERIOD_US}", True))
    else:
        if memory_bytes is not None:
            out.append(("memory.limit_in_bytes", str(memory_bytes), True))
            if not swap:
                out.append(("memory.memsw.limit_in_bytes", str(memory_bytes), False))
        if quota_us is not None:
            out.append(("cpu.cfs_period_us", str(CPU_PERIOD_US), True))
            out.append(("cpu.cfs_quota_us", str(quota_us), True))
    return out


def _host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------------
# Killing what is inside, removing groups
# ---------------------------------------------------------------------------------------------------------


def _members(dirs: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        pids |= _read_pids(d / "cgroup.procs")
    return pids


def _signal_member(pid: int, dirs: list[Path]) -> None:
    """SIGKILL ``pid`` only if it is still in one of ``dirs``.

    A pidfd pins the process first, so a PID that died and was reused between reading cgroup.procs and
    signalling is never hit: the re-check finds the reused PID outside our groups.
    """
    fd: int | None = None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # kernel before 5.3: a re-check right before kill(2) is the best we have
        fd = None
    try:
        if pid not in _members(dirs):
            return
        if fd is not None:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        if fd is not None:
            os.close(fd)


def _kill_members(dirs: list[Path], timeout_s: float) -> set[int]:
    """SIGKILL every process in ``dirs`` until they are empty; the PIDs still there at the deadline."""
    for d in dirs:  # v2 (5.14+): one write kills everything, including processes forked meanwhile
        if (d / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(d / "cgroup.kill", "1")
    deadline = time.monotonic() + timeout_s
    while True:
        pids = _members(dirs) - {os.getpid()}
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            _signal_member(pid, dirs)
        time.sleep(0.01)


def _rmdir(path: Path, deadline: float) -> str | None:
    """Remove one group; None on success (or if already gone), the reason otherwise.

    A group whose last process was just killed can answer EBUSY for a moment while the process exits.
    """
    while True:
        try:
            os.rmdir(path)
            return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return f"{path}: {exc.strerror}"
            time.sleep(0.01)


# ---------------------------------------------------------------------------------------------------------
# v2 parents and controllers
# ---------------------------------------------------------------------------------------------------------


def _v2_candidates(h: Hierarchy) -> list[Path]:
    """Where a v2 group may go: beside our own cgroup (its parent), else the top of the hierarchy."""
    first = h.own.parent if h.own != h.mount else h.mount
    return list(dict.fromkeys([first, h.mount]))


def _enable_controllers(parent: Path, controllers: frozenset[str]) -> tuple[str, ...]:
    """Make ``controllers`` available to the children of ``parent``; return those this call switched on."""
    available = set((_read(parent / "cgroup.controllers") or "").split())
    missing = sorted(controllers - available)
    if missing:
        raise BudgetUnavailable(
            f"{', '.join(missing)} not delegated to {parent} (absent from its cgroup.controllers; "
            "no delegation of that controller here)"
        )
    active = set((_read(parent / "cgroup.subtree_control") or "").split())
    todo = tuple(sorted(controllers - active))
    if todo:
        try:
            _write(parent / "cgroup.subtree_control", " ".join("+" + c for c in todo))
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise BudgetUnavailable(
                    f"cannot enable {', '.join(todo)} for the children of {parent}: it has processes of its own "
                    "(cgroup v2 no-internal-process rule); start bubbleup from a cgroup whose parent has none, "
                    "e.g. systemd-run --scope -p Delegate=yes ..."
                ) from exc
            raise _explain(exc, f"enable {', '.join(todo)} in", parent / "cgroup.subtree_control") from exc
    return todo


def _restore_controllers(parent: Path, enabled: tuple[str, ...]) -> None:
    """Switch off what ``_enable_controllers`` switched on, unless another bubbleup group still sits there."""
    if not enabled:
        return
    with contextlib.suppress(OSError):
        if any(_NAME_RE.match(p.name) for p in parent.iterdir() if p.is_dir()):
            return
        _write(parent / "cgroup.subtree_control", " ".join("-" + c for c in enabled))


# ---------------------------------------------------------------------------------------------------------
# The budget
# ---------------------------------------------------------------------------------------------------------


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
            host = _host_cores()
            quota_us: int | None = None
            notes = self._state.notes
            if self.spec.cpus is not None:
                if self.spec.cpus >= host:
                    notes.append(f"cpus {self.spec.cpus:g} requested, host has {host}: no CPU limit applied")
                else:
                    quota_us = max(_MIN_QUOTA_US, round(self.spec.cpus * CPU_PERIOD_US))
            memory_bytes = self.spec.memory_mb * MIB if self.spec.memory_mb is not None else None
            needed = ({"memory"} if memory_bytes is not None else set()) | ({"cpu"} if quota_us is not None else set())
            plan = _plan(hierarchies(), needed)
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
                _write(path, value)
            except OSError as exc:
                if required:
                    raise _explain(exc, f"write {value} to", path) from exc
                self._state.notes.append(f"could not write {value} to {path}: {exc.strerror}")
        if g.hierarchy.version == 1 and mem is not None:
            # v1 children inherit oom_kill_disable from their parent; with it set, processes would hang at the
            # limit instead of one being killed. Written only when needed: the file is deprecated and warns.
            if _read_kv(g.path / "memory.oom_control").get("oom_kill_disable") == 1:
                try:
                    _write(g.path / "memory.oom_control", "0")
                except OSError as exc:
                    raise _explain(exc, "enable the OOM killer in", g.path / "memory.oom_control") from exc

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
            limit = _read_int(mem.path / ("memory.max" if v2 else "memory.limit_in_bytes"))
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
        if (_read(Path("/proc/sys/kernel/sched_autogroup_enabled")) or "0") != "1":
            return False
        if self._group("cpu") is not None:
            return False
        v2 = next((g for g in self._state.groups if g.hierarchy.version == 2), None)
        if v2 is not None:
            node = v2.path
            while node != v2.hierarchy.mount and v2.hierarchy.mount in node.parents:
                if "cpu" in (_read(node / "cgroup.controllers") or "").split():
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

    def env(self) -> dict[str, str]:
        """The environment entry that makes a child's ``join_from_env()`` join this budget."""
        files = self.procs_files()
        bad = [f for f in files if os.pathsep in f]
        if bad:
            raise BudgetUnavailable(f"cgroup path contains {os.pathsep!r} and cannot go into {ENV_VAR}: {bad[0]}")
        return {ENV_VAR: os.pathsep.join(files)}

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed so the process joins the budget before ``exec``: nothing it touches is charged outside.

        Uses ``/bin/sh`` (``echo $$ > cgroup.procs; exec "$@"``); the PID stays the same, so Popen and
        psutil see the real command. Exits with status 125 if joining fails (sh names the file on stderr).
        Works for commands that cannot call ``join_from_env()`` (the ``command`` workload, stress-ng).
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
            return sorted(_members(g.path for g in self._state.groups)) if self._state.phase == "applied" else []

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
            current, peak = _read_int(p / "memory.current"), _read_int(p / "memory.peak")
            events, stat = _read_kv(p / "memory.events"), _read_kv(p / "memory.stat")
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
            current, peak = _read_int(p / "memory.usage_in_bytes"), _read_int(p / "memory.max_usage_in_bytes")
            stat, oom = _read_kv(p / "memory.stat"), _read_kv(p / "memory.oom_control")
            anon, cache = stat.get("total_rss", stat.get("rss")), stat.get("total_cache", stat.get("cache"))
            out.update(
                memory_current_mb=current / MIB if current is not None else None,
                memory_peak_mb=peak / MIB if peak is not None else None,
                memory_anon_mb=anon / MIB if anon is not None else None,
                memory_file_mb=cache / MIB if cache is not None else None,
                oom_kills=oom.get("oom_kill"),
                oom_events=None,  # v1 counts kills only (and notifies OOMs through eventfd, which we do not hold)
                limit_hits=_read_int(p / "memory.failcnt"),
                major_faults=stat.get("total_pgmajfault", stat.get("pgmajfault")),
            )
        for g in self._state.groups:
            if g.hierarchy.version == 2:
                psi = _read_pressure(g.path / "memory.pressure")
                out.update(memory_pressure_some_s=psi.get("some"), memory_pressure_full_s=psi.get("full"))
                cpu = _read_kv(g.path / "cpu.stat")  # core file: present even without the cpu controller
                if "usage_usec" in cpu:
                    out["cpu_usage_s"] = cpu["usage_usec"] / 1e6
                if "nr_throttled" in cpu:
                    out["cpu_throttled_periods"] = cpu["nr_throttled"]
                    out["cpu_throttled_s"] = cpu.get("throttled_usec", 0) / 1e6
            elif "cpu" in g.controllers:
                cpu = _read_kv(g.path / "cpu.stat")
                out["cpu_throttled_periods"] = cpu.get("nr_throttled")
                out["cpu_throttled_s"] = cpu["throttled_time"] / 1e9 if "throttled_time" in cpu else None
                usage = _read_int(g.path / "cpuacct.usage")  # only where cpu and cpuacct share a hierarchy
                if usage is not None:
                    out["cpu_usage_s"] = usage / 1e9
        out["pids"] = sorted(_members(g.path for g in self._state.groups))
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
            if os.getpid() in _members(dirs):  # never kill ourselves: step back out first
                for g in self._state.groups:
                    with contextlib.suppress(OSError):
                        _write(g.hierarchy.own / "cgroup.procs", str(os.getpid()))
            left = _kill_members(dirs, timeout_s)
            with contextlib.suppress(OSError):
                self._state.final_stats = self._collect()
            deadline = time.monotonic() + max(1.0, timeout_s / 2)
            failures: list[str] = []
            remaining: list[_Group] = []
            for g in self._state.groups:
                why = _rmdir(g.path, deadline)
                if why is None:
                    _restore_controllers(g.path.parent, g.enabled_in_parent)
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
            raise _explain(exc, "create a cgroup in", h.own) from exc
        return _Group(h, h.own / name, controllers)
    reasons: list[str] = []
    for parent in _v2_candidates(h):
        try:
            enabled = _enable_controllers(parent, controllers)
        except BudgetUnavailable as exc:
            reasons.append(str(exc))
            continue
        try:
            os.mkdir(parent / name)
        except OSError as exc:
            _restore_controllers(parent, enabled)
            reasons.append(str(_explain(exc, "create a cgroup in", parent)))
            continue
        return _Group(h, parent / name, controllers, enabled)
    raise BudgetUnavailable("; ".join(reasons))


def _ancestor_limits(g: _Group) -> Iterator[int]:
    """Memory limits of the cgroups enclosing ``g`` (they bound it whatever the budget says)."""
    fname = "memory.max" if g.hierarchy.version == 2 else "memory.limit_in_bytes"
    node = g.path.parent
    while node == g.hierarchy.mount or g.hierarchy.mount in node.parents:
        value = _read_int(node / fname)
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


# ---------------------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------------------


def join(procs_files: Iterable[str]) -> None:
    """Move this process into the budget: write our PID into each ``cgroup.procs``.

    Called by a child as its very first statement: memory is charged where it is first touched, so
    whatever the child allocated before joining stays charged outside the budget.
    """
    pid = str(os.getpid()).encode()
    for f in procs_files:
        if not f:
            continue
        try:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        except FileNotFoundError as exc:
            raise BudgetUnavailable(f"cannot join the budget: {f} is gone (the budget was closed)") from exc
        except OSError as exc:
            raise _explain(exc, "join the budget through", Path(f)) from exc


def join_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Join the budget named by ``$BUBBLEUP_CGROUP_PROCS``; False (nothing done) when it is not set.

    Raises ``BudgetUnavailable`` rather than carrying on outside: a process measured outside its budget
    would make the run quietly wrong.
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not value:
        return False
    join(value.split(os.pathsep))
    return True


# ---------------------------------------------------------------------------------------------------------
# Checking and sweeping
# ---------------------------------------------------------------------------------------------------------


def availability(memory: bool = True, cpu: bool = True) -> tuple[bool, str]:
    """Can budgets be applied here? ``(True, where)`` or ``(False, why)``.

    Tries for real (creates, limits and removes a probe group): permissions, read-only mounts and
    delegation only show when one writes.
    """
    probe = Budget(memory_mb=64 if memory else None, cpus=min(0.5, _host_cores() / 2) if cpu else None)
    try:
        probe.apply()
        info = probe.describe()
        probe.close()
    except (BudgetUnavailable, BudgetCleanupError) as exc:
        return False, str(exc)
    where = ", ".join(f"{k} under {Path(v).parent}" for k, v in info["groups"].items())
    return True, f"cgroup v{info['cgroup_version']}: {where}"


def find_groups(owner_pid: int | None = None) -> list[Path]:
    """Every ``bubbleup-*`` cgroup in every mounted hierarchy (only ``owner_pid``'s if given)."""
    out: list[Path] = []
    for h in hierarchies():
        for path in _walk(h.mount):
            m = _NAME_RE.match(path.name)
            if m and (owner_pid is None or int(m[1]) == owner_pid):
                out.append(path)
    return out


def _walk(top: Path) -> Iterator[Path]:
    """The bubbleup groups under ``top`` (not descending into them: we never nest)."""
    stack = [top]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.name.startswith(PREFIX):
                    yield Path(e.path)
                else:
                    stack.append(Path(e.path))


@dataclass
class SweepResult:
    """What ``sweep_stale()`` did: groups removed, stale groups left because processes are inside, errors."""

    removed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _owner_gone(pid: int, group: Path) -> bool:
    """True if the orchestrator that named ``group`` is dead (or its PID now belongs to a younger process)."""
    if pid == os.getpid():
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return proc.create_time() > group.stat().st_ctime + 2.0  # the PID was reused after the group was made
    except psutil.NoSuchProcess:
        return True
    except (psutil.AccessDenied, OSError):
        return False


def sweep_stale(kill: bool = False, timeout_s: float = 5.0) -> SweepResult:
    """Remove ``bubbleup-<pid>-*`` groups whose orchestrator no longer exists; call at start-up.

    Only a SIGKILLed (or power-cut) orchestrator leaves groups behind. Groups with processes still inside
    (bubbles that outlived it) are left and listed in ``busy`` unless ``kill`` is true, in which case those
    processes are SIGKILLed by PID first. Live runs' groups are never touched.
    """
    result = SweepResult()
    for path in find_groups():
        m = _NAME_RE.match(path.name)
        if m is None or not _owner_gone(int(m[1]), path):
            continue
        inside = _members([path])
        if inside and not kill:
            result.busy.append(f"{path} (processes {sorted(inside)})")
            continue
        if inside:
            left = _kill_members([path], timeout_s)
            if left:
                result.errors.append(f"{path}: processes {sorted(left)} did not die")
                continue
        why = _rmdir(path, time.monotonic() + timeout_s)
        if why is None:
            result.removed.append(str(path))
        else:
            result.errors.append(why)
    return result
