"""A Tegrastats-like sampler: what the machine did while a point was measured.

A daemon thread in the orchestrator samples, at ``interval_s``: system CPU (total
and per core), memory used/available, the worker's and the bubbles' RSS, context
switches and major page faults per second, and pressure-stall information
(``/proc/pressure/{cpu,memory,io}``) where the kernel has it. Everything is read
from /proc through psutil: no process of the measured ones is touched, and one
sample costs well under a millisecond of the orchestrator's CPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from bubbleup.store.records import TelemetryRow

MIB = 1 << 20
PSI = (("cpu", "some"), ("memory", "some"), ("memory", "full"), ("io", "some"))


def read_psi() -> dict[str, float]:
    """avg10 of every PSI line we track; empty where the kernel has no PSI."""
    out: dict[str, float] = {}
    for resource, kind in PSI:
        try:
            text = Path(f"/proc/pressure/{resource}").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(kind):
                fields = dict(f.split("=") for f in line.split()[1:])
                out[f"psi_{resource}_{kind}_avg10"] = float(fields["avg10"])
    return out


def core_share(pid: int, window_s: float) -> float:
    """Cores' worth of CPU time process ``pid`` used over the next ``window_s`` seconds, seen from outside."""
    proc = psutil.Process(pid)
    c0, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(window_s)
    c1, t1 = proc.cpu_times(), time.monotonic()
    return ((c1.user + c1.system) - (c0.user + c0.system)) / (t1 - t0)


def read_major_faults() -> int | None:
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("pgmajfault "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def columns(n_cpus: int | None = None) -> list[str]:
    """The columns of telemetry.csv on this machine (the per-core count varies by machine)."""
    n = n_cpus if n_cpus is not None else psutil.cpu_count(logical=True) or 1
    return [
        "repeat", "value", "t_s", "cpu_percent", *[f"cpu{i}_percent" for i in range(n)], "mem_used_mb",
        "mem_available_mb", "worker_rss_mb", "bubbles_rss_mb", "ctx_switches_per_s", "major_faults_per_s",
        *[f"psi_{r}_{k}_avg10" for r, k in PSI],
    ]  # fmt: skip


class Sampler:
    """Samples in a background thread between ``start()`` and ``stop()``; rows come back from ``stop()``."""

    def __init__(self, interval_s: float, key: dict[str, int], epoch0: float,
                 pids: Callable[[], dict[str, list[int]]]) -> None:  # fmt: skip
        self.interval_s = interval_s
        self.key = key
        self.epoch0 = epoch0
        self.pids = pids
        self.rows: list[TelemetryRow] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)
        self._procs: dict[int, psutil.Process] = {}
        self._n_cpus = psutil.cpu_count(logical=True) or 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[TelemetryRow]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.rows

    def _rss_mb(self, pids: list[int]) -> float:
        total = 0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return total / MIB

    def _loop(self) -> None:
        psutil.cpu_percent(percpu=True)  # prime the deltas
        last_t = time.monotonic()
        last_ctx = psutil.cpu_stats().ctx_switches
        last_faults = read_major_faults()
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            dt = max(now - last_t, 1e-6)
            per_cpu = psutil.cpu_percent(percpu=True)
            vm = psutil.virtual_memory()
            ctx = psutil.cpu_stats().ctx_switches
            faults = read_major_faults()
            pids = self.pids()
            psi = read_psi()
            per_cpu = (per_cpu + [float("nan")] * self._n_cpus)[: self._n_cpus]
            self.rows.append({
                **self.key, "t_s": round(time.time() - self.epoch0, 4),
                "cpu_percent": round(sum(per_cpu) / self._n_cpus, 2),
                **{f"cpu{i}_percent": v for i, v in enumerate(per_cpu)},
                "mem_used_mb": round((vm.total - vm.available) / MIB, 1),
                "mem_available_mb": round(vm.available / MIB, 1),
                "worker_rss_mb": round(self._rss_mb(pids.get("worker", [])), 2),
                "bubbles_rss_mb": round(self._rss_mb(pids.get("bubbles", [])), 2),
                "ctx_switches_per_s": round((ctx - last_ctx) / dt, 1),
                "major_faults_per_s": round((faults - last_faults) / dt, 2)
                if faults is not None and last_faults is not None else "",
                **{f"psi_{r}_{k}_avg10": psi.get(f"psi_{r}_{k}_avg10", "") for r, k in PSI},
            })  # fmt: skip
            last_t, last_ctx, last_faults = now, ctx, faults
