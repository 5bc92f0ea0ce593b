"""cgroup v1/v2 mechanics: finding the hierarchies, reading and writing control files, enabling
controllers, killing a group's members by PID, and finding bubbleup's groups.

Only the standard library and psutil; no state. :mod:`bubbleup.pressure.budget` builds on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bubbleup.pressure.budget_spec import CPU_PERIOD_US

PREFIX = "bubbleup-"
NAME_RE = re.compile(r"^bubbleup-(\d+)-(\d+)$")


class BudgetUnavailable(Exception):
    """The budget cannot be applied here; the message says why in one line (not root, no delegation, ...)."""


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
            controllers = frozenset((read_file(mount / "cgroup.controllers") or "").split())
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


def plan_controllers(hs: list[Hierarchy], needed: set[str]) -> dict[Hierarchy, frozenset[str]]:
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


def read_file(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_int(path: Path) -> int | None:
    text = read_file(path)
    try:
        return int(text) if text is not None else None
    except ValueError:  # "max"
        return None


def read_kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (read_file(path) or "").splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def read_pressure(path: Path) -> dict[str, float]:
    """``some``/``full`` stall totals in seconds from a PSI file."""
    out: dict[str, float] = {}
    for line in (read_file(path) or "").splitlines():
        kind, *pairs = line.split()
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key == "total":
                out[kind] = int(value) / 1e6
    return out


def _read_pids(path: Path) -> set[int]:
    text = read_file(path)
    return {int(x) for x in text.split()} if text else set()


def write_file(path: Path, value: str) -> None:
    # One write_file(2) per value: cgroupfs parses each write separately, and open(..., "w") + buffering
    # could split or merge them.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def explain(exc: OSError, action: str, path: Path) -> BudgetUnavailable:
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


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------------
# Killing what is inside, removing groups
# ---------------------------------------------------------------------------------------------------------


def members(dirs: Iterable[Path]) -> set[int]:
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
        if pid not in members(dirs):
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


def kill_members(dirs: list[Path], timeout_s: float) -> set[int]:
    """SIGKILL every process in ``dirs`` until they are empty; the PIDs still there at the deadline."""
    for d in dirs:  # v2 (5.14+): one write kills everything, including processes forked meanwhile
        if (d / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                write_file(d / "cgroup.kill", "1")
    deadline = time.monotonic() + timeout_s
    while True:
        pids = members(dirs) - {os.getpid()}
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            _signal_member(pid, dirs)
        time.sleep(0.01)


def rmdir_group(path: Path, deadline: float) -> str | None:
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


def v2_candidates(h: Hierarchy) -> list[Path]:
    """Where a v2 group may go: beside our own cgroup (its parent), else the top of the hierarchy."""
    first = h.own.parent if h.own != h.mount else h.mount
    return list(dict.fromkeys([first, h.mount]))


def enable_controllers(parent: Path, controllers: frozenset[str]) -> tuple[str, ...]:
    """Make ``controllers`` available to the children of ``parent``; return those this call switched on."""
    available = set((read_file(parent / "cgroup.controllers") or "").split())
    missing = sorted(controllers - available)
    if missing:
        raise BudgetUnavailable(
            f"{', '.join(missing)} not delegated to {parent} (absent from its cgroup.controllers; "
            "no delegation of that controller here)"
        )
    active = set((read_file(parent / "cgroup.subtree_control") or "").split())
    todo = tuple(sorted(controllers - active))
    if todo:
        try:
            write_file(parent / "cgroup.subtree_control", " ".join("+" + c for c in todo))
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise BudgetUnavailable(
                    f"cannot enable {', '.join(todo)} for the children of {parent}: it has processes of its own "
                    "(cgroup v2 no-internal-process rule); start bubbleup from a cgroup whose parent has none, "
                    "e.g. systemd-run --scope -p Delegate=yes ..."
                ) from exc
            raise explain(exc, f"enable {', '.join(todo)} in", parent / "cgroup.subtree_control") from exc
    return todo


def restore_controllers(parent: Path, enabled: tuple[str, ...]) -> None:
    """Switch off what ``enable_controllers`` switched on, unless another bubbleup group still sits there."""
    if not enabled:
        return
    with contextlib.suppress(OSError):
        if any(NAME_RE.match(p.name) for p in parent.iterdir() if p.is_dir()):
            return
        write_file(parent / "cgroup.subtree_control", " ".join("-" + c for c in enabled))


def find_groups(owner_pid: int | None = None) -> list[Path]:
    """Every ``bubbleup-*`` cgroup in every mounted hierarchy (only ``owner_pid``'s if given)."""
    out: list[Path] = []
    for h in hierarchies():
        for path in _walk(h.mount):
            m = NAME_RE.match(path.name)
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
