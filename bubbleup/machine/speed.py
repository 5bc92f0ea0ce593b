"""How fast this CPU runs right now: a fixed interpreter loop, timed in the thread's own CPU time.

Why: on our 2-vCPU VMs the CPU changes speed by 15-30% for seconds at a time with nothing of ours
running. Measured (2026-12-06, ApproxNet 128px/exit2 alone on CPU 0 for two minutes, 0.1 s windows):
window medians wandered 3.2-4.6 ms, and even 6 s block means kept an 7.4% standard deviation; this
probe, taken between the windows, moved with them (r = 0.82), and latency divided by it kept 2.3%
over 0.5 s blocks and 0.9% over 6 s. A point measured in a slow state is not a slower workload, so
every timed inference carries the probe taken nearest before it (``samples.csv`` ``speed_ns``) and
analysis can compare like with like (:mod:`bubbleup.analysis.speed`).

What it does not see, by construction: time-sharing (it counts the thread's CPU time, not wall time,
so a bubble that preempts the workload, the contention we measure, does not enter it), and little of
cache or memory pressure (an interpreter loop over small integers: its code and data stay in L1 and
L2, though an inclusive LLC's evictions could reach them). What it does see and must: the core's
frequency and its sharing with a hardware sibling or other tenants. Where our own load changes that (a
turbo budget shared by the cores, a governor, heat), the effect is the same at the same point of two
runs, so comparisons of one point across runs stay honest; within a run, analysis tests whether the
probe followed the pressure before it corrects anything (:mod:`bubbleup.analysis.speed`).
"""

from __future__ import annotations

import statistics
import time

#: Iterations of one timing of the loop (about 0.35 ms on the 2.1 GHz Xeon VMs here).
LOOPS = 8000
#: Timings per probe; the median is taken, so a timer interrupt in one of them does not move it.
TIMINGS = 5
#: A step probes again once this long has passed since its last probe (the speed states last seconds;
#: a probe costs ~2 ms, so this is ~2% of the step's time, spent between inferences, never inside one).
EVERY_S = 0.1


def _loop() -> int:
    clock = time.thread_time_ns
    x = 0
    start = clock()
    for i in range(LOOPS):
        x += i * i
    return clock() - start


def probe_ns() -> float:
    """Thread CPU nanoseconds of the reference loop now (median of :data:`TIMINGS`); larger is slower."""
    return float(statistics.median(_loop() for _ in range(TIMINGS)))
