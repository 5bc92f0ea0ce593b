"""Removing what a SIGKILLed orchestrator left behind: ``bubbleup-<pid>-*`` cgroups whose owner is gone.

Called at every run's start; live runs' groups are never touched.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bubbleup.pressure.cgroups import NAME_RE, find_groups, kill_members, members, rmdir_group


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
        m = NAME_RE.match(path.name)
        if m is None or not _owner_gone(int(m[1]), path):
            continue
        inside = members([path])
        if inside and not kill:
            result.busy.append(f"{path} (processes {sorted(inside)})")
            continue
        if inside:
            left = kill_members([path], timeout_s)
            if left:
                result.errors.append(f"{path}: processes {sorted(left)} did not die")
                continue
        why = rmdir_group(path, time.monotonic() + timeout_s)
        if why is None:
            result.removed.append(str(path))
        else:
            result.errors.append(why)
    return result
