"""What the machine looked like: every run records it, because contention results depend on it.

CPU model, cores, frequency governor and limits (the TX2 shipped throttled),
memory, swap, transparent huge pages, scheduler autogroup (it decides whether
N processes are N scheduling entities), cgroup limits, kernel and versions.
Reading must never fail a run: unknown values are recorded as None.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import psutil

MIB = 1 << 20


def read_text(path: str | Path) -> str | None:
    """A /proc or /sys value, stripped; None where the machine does not have it."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_model() -> str | None:
    text = read_text("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _governors() -> dict[str, Any]:
    base = Path("/sys/devices/system/cpu")
    govs: set[str] = set()
    max_khz: list[int] = []
    hw_max_khz: list[int] = []
    for cpu in sorted(base.glob("cpu[0-9]*")):
        g = read_text(str(cpu / "cpufreq/scaling_governor"))
        if g:
            govs.add(g)
        for name, dest in (("scaling_max_freq", max_khz), ("cpuinfo_max_freq", hw_max_khz)):
            v = read_text(str(cpu / "cpufreq" / name))
            if v and v.isdigit():
                dest.append(int(v))
    return {
        "cpu_governor": ",".join(sorted(govs)) or None,
        "cpu_max_mhz": max(max_khz) / 1000 if max_khz else None,
        "cpu_hw_max_mhz": max(hw_max_khz) / 1000 if hw_max_khz else None,
    }


def _thp() -> str | None:
    text = read_text("/sys/kernel/mm/transparent_hugepage/enabled")
    if text and "[" in text:
        return text.split("[", 1)[1].split("]", 1)[0]
    return text


def _cgroup() -> dict[str, Any]:
    """The limits of this process's own cgroup, not of the hierarchy's root: under ``systemd-run -p MemoryMax=2G``
    or a job scheduler's group the limit sits on the group the process is in (or one above it)."""
    info: dict[str, Any] = {"cgroup_version": 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1}
    own = read_text("/proc/self/cgroup") or ""
    info["cgroup_path"] = own.splitlines()[0] if own else None
    groups = dict(line.split(":", 2)[1:] for line in own.splitlines() if line.count(":") >= 2)  # controllers -> path
    v2, memory_v1 = groups.get("", "/"), next((p for c, p in groups.items() if "memory" in c.split(",")), "/")
    info["cgroup_memory_max"] = _nearest_limit(Path("/sys/fs/cgroup"), v2, "memory.max")
    info["cgroup_cpu_max"] = _nearest_limit(Path("/sys/fs/cgroup"), v2, "cpu.max")
    info["cgroup_v1_memory_limit"] = _nearest_limit(Path("/sys/fs/cgroup/memory"), memory_v1, "memory.limit_in_bytes")
    return info


def _nearest_limit(mount: Path, group: str, name: str) -> str | None:
    """``name`` of ``group`` or, where that says no limit (``max``), of the nearest group above it that sets one;
    else what the topmost readable group says (None where the file is nowhere: another cgroup version)."""
    seen: str | None = None
    here = mount / group.strip("/")
    for directory in [here, *here.parents]:
        text = read_text(directory / name)
        if text is not None and not text.startswith("max") and text != str(_V1_UNLIMITED):
            return text
        seen = text if text is not None else seen
        if directory == mount:
            break
    return seen


#: What cgroup v1 writes for "no memory limit" (the largest page-aligned signed 64-bit number).
_V1_UNLIMITED = 9223372036854771712


def versions() -> dict[str, str | None]:
    """Versions of the libraries that shape the numbers. Imports nothing heavy."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("bubbleup", "numpy", "psutil", "pandas", "scipy", "tensorflow", "tensorflow-cpu", "keras"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def collect() -> dict[str, Any]:
    """A snapshot of the machine, cheap enough to take at the start of every run."""
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_logical": psutil.cpu_count(logical=True),
        "cpu_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        **_governors(),
        "mem_total_mb": vm.total / MIB,
        "mem_available_mb": vm.available / MIB,
        "swap_total_mb": swap.total / MIB,
        "thp": _thp(),
        "sched_autogroup": read_text("/proc/sys/kernel/sched_autogroup_enabled"),
        "psi_available": Path("/proc/pressure/cpu").exists(),
        "loadavg_1m": load[0],
        **_cgroup(),
        "python_executable": sys.executable,
        "versions": versions(),
        "speed_probe": speed_probe(),
    }
    return env


def speed_probe() -> dict[str, Any]:
    """What the CPU speed probe's nanoseconds depend on besides the CPU's speed (bubbleup.machine.speed):
    two runs' probes are comparable only when these and the CPU model match."""
    from bubbleup.machine import speed

    return {"loops": speed.LOOPS, "timings": speed.TIMINGS, "every_s": speed.EVERY_S,
            "python": platform.python_version(), "implementation": platform.python_implementation()}  # fmt: skip


def fingerprint() -> dict[str, Any]:
    """What a machine-specific measurement (the reporter's curve) depends on: the CPU, its caches, the
    cores and memory this process may use. Not the hostname: a fresh VM of the same type matches."""
    from bubbleup.pressure.kinds import llc_bytes

    return {
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else psutil.cpu_count(),
        "llc_mb": round(llc_bytes() / MIB, 1),
        "mem_total_gb": round(psutil.virtual_memory().total / (1 << 30)),
    }


def fingerprint_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``key: A vs B`` for every fingerprint field that differs (empty: the same kind of machine)."""
    return [f"{k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def warnings(env: dict[str, Any]) -> list[str]:
    """Conditions that distort contention results, worded for a human."""
    out = []
    gov = env.get("cpu_governor")
    if gov and gov not in ("performance",):
        out.append(f"CPU frequency governor is {gov!r}: frequency scaling adds noise; 'performance' is steadier")
    hw, cap = env.get("cpu_hw_max_mhz"), env.get("cpu_max_mhz")
    if hw and cap and cap < 0.95 * hw:
        out.append(f"CPU frequency capped at {cap:.0f} of {hw:.0f} MHz (throttled, as the TX2 shipped)")
    load, cores = env.get("loadavg_1m"), env.get("cpu_logical") or 1
    if load is not None and load > 0.5 * cores:
        out.append(f"the machine was busy at start (1-min load {load:.2f} on {cores} cores)")
    return out
