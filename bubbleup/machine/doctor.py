"""``bubbleup doctor``: what on this machine would distort a contention result, each with a verdict and a fix.

Every check is a small function returning a Finding, so a new one is one function.
Nothing here changes the machine; it only reads /proc, /sys and package metadata.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bubbleup.machine import environment

OK, WARN, INFO = "ok", "warn", "info"


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: str  # ok | warn | info
    detail: str
    fix: str = ""


def _governor(env: dict[str, Any]) -> Finding:
    gov, cap, hw = env.get("cpu_governor"), env.get("cpu_max_mhz"), env.get("cpu_hw_max_mhz")
    if gov is None:
        return Finding("CPU frequency", INFO, "no cpufreq interface (typical of VMs): frequency is the host's business")
    if cap and hw and cap < 0.95 * hw:
        return Finding("CPU frequency", WARN, f"governor {gov}, capped at {cap:.0f} of {hw:.0f} MHz (throttled)",
                       "raise scaling_max_freq (on Jetson boards: sudo nvpmodel -m 0 && sudo jetson_clocks)")
    if gov != "performance":
        return Finding("CPU frequency", WARN, f"governor {gov}: clocks move with load, adding noise",
                       "sudo cpupower frequency-set -g performance (or write 'performance' to scaling_governor)")
    return Finding("CPU frequency", OK, f"governor {gov}, max {cap or '?'} MHz")


def _smt(env: dict[str, Any]) -> Finding:
    active = environment.read_text("/sys/devices/system/cpu/smt/active")
    logical, physical = env.get("cpu_logical"), env.get("cpu_physical")
    if active == "1" or (logical and physical and logical > physical):
        return Finding("SMT", WARN, f"{logical} logical CPUs on {physical} cores: a bubble on a sibling thread "
                       "contends for the same core's caches and ports", "pin workload and bubbles to separate cores, "
                       "or echo off > /sys/devices/system/cpu/smt/control")
    return Finding("SMT", OK, f"{logical} logical CPUs, {physical} cores")


def _autogroup(env: dict[str, Any]) -> Finding:
    ag = env.get("sched_autogroup")
    if ag == "1":
        return Finding("scheduler autogroup", INFO, "on: each session is one scheduling entity; bubbleup's default "
                       "placement (shared-session) keeps every bubble and the worker in its session, so threads "
                       "compete one by one (own-session makes each a session of its own)")
    return Finding("scheduler autogroup", OK, f"{'off' if ag == '0' else 'unknown'}: processes compete one by one")


def _thp(env: dict[str, Any]) -> Finding:
    thp = env.get("thp")
    if thp == "always":
        return Finding("transparent huge pages", WARN, "always: bubble memory may be backed by 2 MiB pages, changing "
                       "TLB pressure and khugepaged background work", "echo madvise > "
                       "/sys/kernel/mm/transparent_hugepage/enabled, or record it alongside results")
    return Finding("transparent huge pages", OK if thp else INFO, f"{thp or 'unknown'}")


def _swap(env: dict[str, Any]) -> Finding:
    swap = env.get("swap_total_mb") or 0
    if swap > 0:
        return Finding("swap", INFO, f"{swap:.0f} MiB: memory pressure degrades gradually (paging) before OOM",
                       "that is realistic for phones; turn it off (swapoff -a) to see the hard wall instead")
    return Finding("swap", INFO, "none: past the memory limit the workload is OOM-killed (a wall, not a slope)")


def _memory(env: dict[str, Any]) -> Finding:
    avail, total = env.get("mem_available_mb") or 0, env.get("mem_total_mb") or 1
    if avail < 0.25 * total:
        return Finding("available memory", WARN, f"{avail:.0f} of {total:.0f} MiB available: big bubbles are refused",
                       "stop memory-hungry processes before measuring")
    return Finding("available memory", OK, f"{avail:.0f} of {total:.0f} MiB available")


def _cgroups(env: dict[str, Any]) -> Finding:
    version = env.get("cgroup_version")
    root = os.geteuid() == 0
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    writable = os.access("/sys/fs/cgroup", os.W_OK) or os.access("/sys/fs/cgroup/memory", os.W_OK)
    detail = f"cgroup v{version}{' (v2 controllers: ' + v2.read_text().strip() + ')' if v2.exists() else ''}"
    if root and writable:
        return Finding("cgroups", OK, f"{detail}; running as root, device budgets can be applied")
    return Finding("cgroups", WARN, f"{detail}; not writable by this user: device budgets cannot be applied",
                   "run as root, or use a systemd user slice with delegation (systemd-run --user -p Delegate=yes)")


def _tensorflow(env: dict[str, Any]) -> Finding:
    versions = env.get("versions", {})
    tf = versions.get("tensorflow") or versions.get("tensorflow-cpu")
    if not tf:
        return Finding("TensorFlow", INFO, "not installed: TensorFlow workloads are unavailable",
                       "pip install -e '.[approxnet]'")  # fmt: skip
    threads = {k: os.environ[k] for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
               if k in os.environ}
    return Finding("TensorFlow", OK, f"{tf}; bubbleup workloads set intra/inter-op threads explicitly and enable GPU "
                   f"memory growth (recorded per run){'; environment: ' + str(threads) if threads else ''}")


def _stress_ng(env: dict[str, Any]) -> Finding:
    path = shutil.which("stress-ng")
    if path:
        return Finding("stress-ng", OK, f"found at {path}")
    return Finding("stress-ng", INFO, "not installed (only needed as a reference load)", "apt-get install stress-ng")


def _busy(env: dict[str, Any], window_s: float = 1.0) -> Finding:
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "name"]) if p.pid != me]
    for p in procs:
        try:
            p.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    time.sleep(window_s)
    busy = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if pct >= 10:
            busy.append((pct, p.pid, p.info.get("name") or "?"))
    busy.sort(reverse=True)
    if busy:
        shown = ", ".join(f"{name} (pid {pid}) {pct:.0f}%" for pct, pid, name in busy[:5])
        return Finding("other busy processes", WARN, f"{shown} of a core", "stop them, or results measure them too")
    return Finding("other busy processes", OK, f"none above 10% of a core over {window_s:.0f} s")


CHECKS: list[Callable[[dict[str, Any]], Finding]] = [
    _governor, _smt, _autogroup, _thp, _swap, _memory, _cgroups, _tensorflow, _stress_ng, _busy,
]


def diagnose() -> list[Finding]:
    env = environment.collect()
    return [check(env) for check in CHECKS]


def render(findings: list[Finding]) -> str:
    marks = {OK: "ok  ", WARN: "WARN", INFO: "info"}
    lines = []
    for f in findings:
        lines.append(f"[{marks[f.verdict]}] {f.check}: {f.detail}")
        if f.fix and f.verdict != OK:
            lines.append(f"       fix: {f.fix}")
    return "\n".join(lines)
