"""Whether two CPUs share a last-level cache right now: one cache line's round trip between them.

A run with ``placement: apart`` presses on the workload's cache from CPUs the workload does not use, which
presses on nothing unless those CPUs sit under the workload's L3. On a VM the guest cannot know: it is shown one
L3 for all its vCPUs while the hypervisor moves them between L3 domains. On the 2-vCPU AMD EPYC VM a line
bounced between the two vCPUs took 50-56 ns (a C loop) under one L3 and 300-325 ns across, in stretches of
seconds, and beside a 16 MiB Bubble-Up bubble the reporter kept QoS 0.59 (median) under one L3 and 0.94 across
(README "Where the reporter's noise comes from"). From Python the same bounce reads 190-230 ns and 340-370 ns:
enough to tell the two apart, so the orchestrator times it before every step of an ``apart`` run
(``points.csv`` ``cpu_link_ns``) and :mod:`bubbleup.analysis.cache_link` says which steps were measured apart.

It runs in a fresh process (``python -m bubbleup.machine.cache_link HERE THERE PARENT``): single-threaded, so it
can fork its partner safely, which a process with threads (the orchestrator's telemetry) cannot. It dies with the
caller and its partner with it (PR_SET_PDEATHSIG), and the caller kills it by PID past a timeout: nothing spins on
after.
"""

from __future__ import annotations

import math
import mmap
import os
import subprocess
import sys
import time

#: Round trips per measurement, in blocks; the fastest block's mean is the answer (a block the scheduler cut into
#: is slower, never faster). 4000 in 8 blocks: 5-11 ms on the EPYC VM, with the other CPU busy with a bubble.
BOUNCES = 4000
BLOCKS = 8
TIMEOUT_S = 2.0


def round_trip_ns(here: int, there: int, timeout_s: float = TIMEOUT_S) -> float:
    """One cache line's round trip between CPU ``here`` and CPU ``there`` in ns, measured in a fresh process;
    NaN when it could not be measured (a CPU not allowed, the helper killed at ``timeout_s``)."""
    # The helper ties itself to this process (PR_SET_PDEATHSIG, given our PID): no preexec_fn, which is not safe
    # in a process with threads, as the orchestrator is.
    cmd = [sys.executable, "-m", "bubbleup.machine.cache_link", str(here), str(there), str(os.getpid())]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):  # run() kills the helper it started on a timeout
        return math.nan
    try:
        return float(done.stdout.strip()) if done.returncode == 0 else math.nan
    except ValueError:
        return math.nan


def _partner(buf: mmap.mmap, there: int, parent: int) -> None:
    """The other end: pinned to ``there``, answer every ping, exit (never returns)."""
    try:
        from bubbleup.procs import die_with_parent

        die_with_parent(parent)
        os.sched_setaffinity(0, {there})
        for _ in range(BOUNCES):
            while buf[0] != 1:
                pass
            buf[0] = 2
    finally:
        os._exit(0)


def measure(here: int, there: int) -> float:
    """In this (single-threaded) process: fork the partner onto ``there``, bounce from ``here``."""
    if here == there:
        raise ValueError(f"CPU {here} twice: a round trip needs two CPUs")
    # Pinned by CPU number, not within the mask inherited from the caller (a benchmark pinned to ``here`` alone
    # still asks about ``there``): OSError for a CPU outside this machine or its cpuset, before anything forks.
    os.sched_setaffinity(0, {there})
    os.sched_setaffinity(0, {here})
    buf = mmap.mmap(-1, mmap.PAGESIZE)
    buf[0] = 0
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _partner(buf, there, parent)
    best, per = math.inf, BOUNCES // BLOCKS
    try:
        for _ in range(BLOCKS):
            t0 = time.perf_counter_ns()
            for _ in range(per):
                buf[0] = 1
                while buf[0] != 2:
                    pass
            best = min(best, (time.perf_counter_ns() - t0) / per)
    finally:
        os.waitpid(pid, 0)
    return best


def main(argv: list[str] | None = None) -> int:
    """``HERE THERE [PARENT]``: print the round trip in ns; with PARENT, die with that process (SIGKILL of the
    caller takes this helper, and so its partner, with it)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        here, there, *parent = (int(a) for a in args)
        if len(parent) > 1:
            raise ValueError("usage: HERE THERE [PARENT]")
        if parent:
            from bubbleup.procs import die_with_parent

            die_with_parent(parent[0])
        print(f"{measure(here, there):.1f}")
    except (ValueError, OSError) as exc:  # a CPU not allowed here, or not two numbers
        print(f"cache_link: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
