"""A Tegrastats-like sampler: what the machine did while a point was measured.

A daemon thread in the orchestrator samples, at ``interval_s``: system CPU (total
and per core), memory used/available, the worker's and the bubbles' RSS, context
switches and major page faults per second, and pressure-stall information
(``/proc/pressure/{cpu,memory,io}``) where the kernel has it. Everything is read
from /proc through psutil: no process of the measured ones is touched, and one
sample costs well under a millisecond of the orchestrator's CPU.

It also tells the run's CPU from everybody else's (:class:`CpuAccount`): ``run_cpu_cores`` is
the cores' worth of CPU the run's own processes used since the last sample (the orchestrator,
the worker, the bubbles and every descendant, by PID), ``outside_cpu_cores`` what the machine's
processes used beyond that. A contention measurement assumes the pressure it applies is the only
pressure; outside CPU is the evidence that it was not (``bubbleup.analysis.validity``).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
        *[f"psi_{r}_{k}_avg10" for r, k in PSI], *CPU_ACCOUNT_COLUMNS,
    ]  # fmt: skip


#: Added to telemetry.csv after schema 1's first runs: a run whose manifest lacks them is sampled without them.
CPU_ACCOUNT_COLUMNS = ("run_cpu_cores", "outside_cpu_cores")


def descendants(pid: int) -> list[int]:
    """PIDs below ``pid`` (stress-ng's workers under its shim, a budget's join shell...), read at every call.

    From ``/proc/PID/task/*/children``: a few small reads, where psutil's ``children()`` scans every
    process on the machine; falls back to psutil where the kernel lacks that file."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        kids: set[int] = set()
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids.update(int(k) for k in f.read().split())
            except FileNotFoundError:
                with contextlib.suppress(psutil.Error):
                    return [c.pid for c in psutil.Process(pid).children(recursive=True)]
            except (OSError, ValueError):
                continue
        out.extend(kids)
        todo.extend(kids)
    return out


def _process_busy_s() -> float:
    """CPU seconds the machine spent running processes (user, nice, system; guest is inside user).

    Interrupt time and steal are left out: no process is charged for them, so counting them would
    make a quiet machine look busy by the run's own interrupts or the hypervisor's neighbours."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system)


class CpuAccount:
    """The run's CPU and everybody else's, in cores, between successive :meth:`sample` calls.

    ``roots()`` gives the run's PIDs (all of them the caller's descendants); their descendants are
    found at every sample, so a process not seen at the last sample started since, and counts all its
    CPU time. Processes already there when the account opens count from then. (Not by their start
    time: psutil derives it from a boot time kept in whole seconds, so a process started 10 ms after
    the last sample can look older than it, and its first CPU, a bubble touching its memory, would
    read as someone else's.)

    A process's CPU here includes its reaped children's (the kernel adds a child's whole CPU time to
    its parent's when the parent waits for it). So a process of the run that ends between samples,
    a stopped bubble or a short-lived helper such as a model export, is still counted: its parent's
    children time grows by all of it, and what was already counted for it comes off, so it counts
    once. Without that, its last interval's CPU would read as someone else's. (One case stays
    wrong: a process whose parent died without reaping it, an orphan, which this harness does not
    leave; its CPU goes to whoever adopts it.)
    """

    def __init__(self, roots: Callable[[], list[int]]) -> None:
        self.roots = roots
        #: Per PID: the process, its CPU seconds at the last sample (its own and its reaped children's)
        #: and its parent's PID.
        self._procs: dict[int, tuple[psutil.Process, float, int]] = {}
        self._t0 = self._t = time.monotonic()
        self._busy = _process_busy_s()
        self._run_cpu_s(opening=True)

    def pids(self) -> set[int]:
        """The run's processes now: the roots and all their descendants."""
        roots = set(self.roots())
        return roots.union(*(descendants(pid) for pid in roots))

    def _run_cpu_s(self, opening: bool = False) -> float:
        """Sum of CPU seconds the run's processes used since they were last seen (or since they started)."""
        total = 0.0
        seen: dict[int, tuple[psutil.Process, float, int]] = {}
        for pid in self.pids():
            try:
                known = self._procs.get(pid)
                proc = known[0] if known is not None else psutil.Process(pid)
                t = proc.cpu_times()
                cpu = t.user + t.system + t.children_user + t.children_system
                if known is not None:
                    last, ppid = known[1], known[2]
                else:
                    last, ppid = (cpu if opening else 0.0), proc.ppid()
                total += max(cpu - last, 0.0)
                seen[pid] = (proc, cpu, ppid)
            except psutil.Error:
                continue
        for pid, (_, last, ppid) in self._procs.items():
            if pid not in seen and (ppid in seen or ppid in self._procs):
                total -= last  # ended and reaped by one of ours: its parent's children time now holds all of it
        self._procs = seen
        return total

    def elapsed_s(self) -> float:
        """Seconds since this account was opened."""
        return time.monotonic() - self._t0

    def sample(self) -> tuple[float, float]:
        """(run cores, outside cores) since the previous call. Outside can come out slightly negative on
        a quiet machine: the system's and the processes' CPU clocks tick apart; it is kept signed, unbiased."""
        now = time.monotonic()
        busy = _process_busy_s()
        run_s = self._run_cpu_s()
        dt = max(now - self._t, 1e-6)
        run = run_s / dt
        outside = (busy - self._busy) / dt - run
        self._t, self._busy = now, busy
        return run, outside


def process_census() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU seconds so far, by PID: what :func:`outside_cpu` names the busiest from."""
    out: dict[int, tuple[str, float]] = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        t = p.info["cpu_times"]
        if t is not None:
            out[p.pid] = (str(p.info["name"] or "?"), float(t.user + t.system))
    return out


def outside_cpu(account: CpuAccount, window_s: float,
                census: dict[int, tuple[str, float]] | None = None) -> dict[str, Any]:  # fmt: skip
    """The machine before a run starts measuring: cores used by the run and by everybody else since ``account``
    was opened, over at least ``window_s``. The run may load its workers inside the window: their CPU is the
    run's, and the check costs no time of its own unless loading took less than the window. With a ``census``
    taken when the account opened, ``busiest`` names who else used the CPU (at most 3, 0.05 cores or more):
    an INVALID verdict that says *who* is one a user can act on."""
    time.sleep(max(0.0, window_s - account.elapsed_s()))
    elapsed = account.elapsed_s()
    run, outside = account.sample()
    out: dict[str, Any] = {"window_s": round(elapsed, 3), "run_cpu_cores": round(run, 3),
                           "outside_cpu_cores": round(outside, 3)}  # fmt: skip
    if census is not None:
        out["busiest"] = busiest_since(census, account.pids() | {os.getpid()}, elapsed)
    return out


def busiest_since(census: dict[int, tuple[str, float]], ours: set[int], elapsed_s: float) -> list[dict[str, Any]]:
    """Who outside ``ours`` used the CPU since ``census`` was taken ``elapsed_s`` ago: at most 3 processes
    with 0.05 cores or more, busiest first. A process started since counts all its CPU; one that ended since
    cannot be named."""
    if elapsed_s <= 0:
        return []
    used = [(cpu - census.get(pid, (name, 0.0))[1], pid, name) for pid, (name, cpu) in process_census().items()
            if pid not in ours]  # fmt: skip
    return [{"pid": pid, "name": name, "cores": round(s / elapsed_s, 3)}
            for s, pid, name in sorted(used, reverse=True)[:3] if s / elapsed_s >= 0.05]  # fmt: skip


class Sampler:
    """Samples in a background thread between ``start()`` and ``stop()``; rows come back from ``stop()``."""

    def __init__(self, interval_s: float, key: dict[str, int], epoch0: float,
                 pids: Callable[[], dict[str, list[int]]], cpu_account: bool = True) -> None:  # fmt: skip
        """``pids()`` names the run's processes by role: ``worker`` and ``bubbles`` (their RSS is sampled),
        ``run`` (the orchestrator); all of them and their descendants are the run's CPU when
        ``cpu_account`` (the ``CPU_ACCOUNT_COLUMNS``; off for a resumed run whose telemetry lacks them)."""
        self.interval_s = interval_s
        self.key = key
        self.epoch0 = epoch0
        self.pids = pids
        self.cpu_account = cpu_account
        self.rows: list[TelemetryRow] = []
        #: Every bubble's RSS at every sample, (epoch, MiB), so a bubble that lost memory is seen.
        self.bubble_rss: dict[int, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)
        self._procs: dict[int, psutil.Process] = {}
        self._n_cpus = psutil.cpu_count(logical=True) or 1
        #: Who else used the CPU while the sampler ran (:func:`busiest_since`), known after ``stop()``; only
        #: with ``cpu_account``. A point that validity finds busy is named by it.
        self.busiest: list[dict[str, Any]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[TelemetryRow]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.rows

    def _rss_mb(self, pids: list[int], keep: dict[int, list[tuple[float, float]]] | None = None) -> float:
        """Summed RSS of ``pids``; with ``keep`` (bubbles) each with its descendants, and recorded per PID."""
        total = 0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if keep is not None:
                for kid in descendants(pid):
                    with contextlib.suppress(psutil.Error):
                        rss += psutil.Process(kid).memory_info().rss
            total += rss
            if keep is not None:
                keep.setdefault(pid, []).append((time.time(), rss / MIB))
        return total / MIB

    def min_rss_mb(self, pid: int, after_epoch: float, before_epoch: float = math.inf) -> tuple[float, int]:
        """(lowest RSS in MiB, number of samples) of bubble ``pid`` sampled between the two times; (NaN, 0) if none."""
        seen = [rss for t, rss in self.bubble_rss.get(pid, []) if after_epoch <= t < before_epoch]
        return (min(seen), len(seen)) if seen else (math.nan, 0)

    def _loop(self) -> None:
        psutil.cpu_percent(percpu=True)  # prime the deltas
        last_t = time.monotonic()
        last_ctx = psutil.cpu_stats().ctx_switches
        last_faults = read_major_faults()
        account = CpuAccount(lambda: [p for group in self.pids().values() for p in group]) if self.cpu_account else None
        census = process_census() if account is not None else None
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            dt = max(now - last_t, 1e-6)
            per_cpu = psutil.cpu_percent(percpu=True)
            vm = psutil.virtual_memory()
            ctx = psutil.cpu_stats().ctx_switches
            faults = read_major_faults()
            pids = self.pids()
            psi = read_psi()
            cpu = {}
            if account is not None:
                cpu = dict(zip(CPU_ACCOUNT_COLUMNS, (round(x, 3) for x in account.sample()), strict=True))
            per_cpu = (per_cpu + [float("nan")] * self._n_cpus)[: self._n_cpus]
            self.rows.append({
                **self.key, "t_s": round(time.time() - self.epoch0, 4),
                "cpu_percent": round(sum(per_cpu) / self._n_cpus, 2),
                **{f"cpu{i}_percent": v for i, v in enumerate(per_cpu)},
                "mem_used_mb": round((vm.total - vm.available) / MIB, 1),
                "mem_available_mb": round(vm.available / MIB, 1),
                "worker_rss_mb": round(self._rss_mb(pids.get("worker", [])), 2),
                "bubbles_rss_mb": round(self._rss_mb(pids.get("bubbles", []), self.bubble_rss), 2),
                "ctx_switches_per_s": round((ctx - last_ctx) / dt, 1),
                "major_faults_per_s": round((faults - last_faults) / dt, 2)
                if faults is not None and last_faults is not None else "",
                **{f"psi_{r}_{k}_avg10": psi.get(f"psi_{r}_{k}_avg10", "") for r, k in PSI}, **cpu,
            })  # fmt: skip
            last_t, last_ctx, last_faults = now, ctx, faults
        if account is not None and census is not None:
            self.busiest = busiest_since(census, account.pids() | {os.getpid()}, account.elapsed_s())
