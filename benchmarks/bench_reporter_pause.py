"""How precisely the reporter reads a co-runner when the co-runner is paused and resumed, at several paces.

    python benchmarks/bench_reporter_pause.py [--seconds 12] [--half-cycles-ms 100,250,1000] [--skip-ms 50]

A bubble score compares the reporter alone with the reporter beside a co-runner. ``bubbleup score`` does that
with steps seconds apart (the co-runner is started and stopped around them), and on a cloud VM the host's own
cache and memory traffic moves the reporter by 2x within seconds (README "Where the reporter's noise comes
from"), so a score's interval is +/-20-30%. Pausing the co-runner (SIGSTOP) and resuming it (SIGCONT) while the
reporter runs on, as Bubble-Flux's phase-in/phase-out does (Yang et al., ISCA 2013), puts every "beside" window
next to an "alone" one a fraction of a second away. This script measures what that buys before the harness is
built on it: the reporter's kernel (``workloads.reporter``, half the LLC) on the first allowed CPU, each
co-runner on the others, paused and resumed every half-cycle for ``--seconds``; per cycle the ratio of the two
windows' median latencies (alone / beside: the reporter's QoS), the first ``--skip-ms`` after every switch left
out; printed per (co-runner, half-cycle): the geometric mean QoS with its 95% bootstrap interval over cycles and
the standard deviation of the cycles' log QoS. A co-runner that does nothing (``sleep``) should read 1.

Before every cycle, the co-runner paused, it also times a cache line bouncing between the two CPUs
(``bubbleup.machine.cache_link``, as ``placement: apart`` runs do before every step): the hypervisor moves a VM's
vCPUs between L3 domains (on the EPYC VM the round trip is 50 ns in C under one L3, 310 ns across), and a
co-runner on another L3 cannot press on the reporter's cache. Where a cell's cycles were split, it prints the QoS
of each part.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from bubbleup.analysis.cache_link import apart_mask
from bubbleup.machine import cache_link
from bubbleup.pressure.kinds import llc_bytes
from bubbleup.procs import tied_to_this_process
from workloads.reporter import ReporterOptions, ReporterWorkload

MIB = 1 << 20


def corunners(bubble_mb: int) -> dict[str, list[str]]:
    """The co-runners measured: the Bubble-Up bubble at half the LLC, stress-ng's stream (when installed), a null."""
    out = {"bubble": [sys.executable, "-m", "bubbleup", "bubble", "--size-mb", str(bubble_mb), "--pattern", "mixed"]}
    if shutil.which("stress-ng"):
        out["stream"] = ["stress-ng", "--stream", "1", "--quiet"]
    out["sleep"] = ["sleep", "3600"]
    return out


class Reporter:
    """The reporter's kernel, timed inference by inference in windows of wall time."""

    def __init__(self, working_set_mb: int) -> None:
        self.workload = ReporterWorkload(ReporterOptions(working_set_mb=working_set_mb))
        self.workload.load()
        self.workload.select("reporter")
        self.samples = self.workload.samples()
        self.i = 0

    def window(self, seconds: float, skip_s: float) -> float:
        """Median latency (ms) over ``seconds``, the first ``skip_s`` of it run but not counted."""
        latencies: list[int] = []
        start = time.perf_counter()
        end, counted = start + seconds, start + skip_s
        while (now := time.perf_counter()) < end:
            t0 = time.perf_counter_ns()
            self.workload.infer(self.samples[self.i % len(self.samples)])
            self.i += 1
            if now >= counted:
                latencies.append(time.perf_counter_ns() - t0)
        return float(np.median(latencies)) / 1e6 if latencies else float("nan")


def paired_qos(reporter: Reporter, group: int, half_s: float, cycles: int, skip_s: float,
               there: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per cycle, alone / beside (median latencies; the order within a cycle alternates), and the cache line's round
    trip to the co-runner's CPU measured just before the cycle, the co-runner paused."""
    out, rtts = [], []
    here = next(iter(os.sched_getaffinity(0)))
    for c in range(cycles):
        os.killpg(group, signal.SIGSTOP)
        rtts.append(cache_link.round_trip_ns(here, there))
        medians = {}
        for running in (True, False) if c % 2 else (False, True):
            os.killpg(group, signal.SIGCONT if running else signal.SIGSTOP)
            medians[running] = reporter.window(half_s, skip_s)
        out.append(medians[False] / medians[True])
    os.killpg(group, signal.SIGCONT)
    return np.asarray(out), np.asarray(rtts)


def interval(qos: np.ndarray, seed: int = 0, n: int = 4000) -> tuple[float, float, float]:
    """Geometric mean and its 95% percentile-bootstrap interval over cycles."""
    logs = np.log(qos)
    means = np.random.default_rng(seed).choice(logs, size=(n, len(logs))).mean(axis=1)
    low, high = np.exp(np.percentile(means, [2.5, 97.5]))
    return float(np.exp(logs.mean())), float(low), float(high)




def cell(label: str, qos: np.ndarray) -> str:
    """``label`` geometric-mean QoS [95% interval] and the spread of the cycles, or "-" for no cycles."""
    if len(qos) < 2:
        return f"{label} -".strip() if not len(qos) else f"{label} {qos[0]:.3f}".strip()
    q, low, high = interval(qos)
    return f"{label} {q:.3f} [{low:.3f}, {high:.3f}] (sd of log {np.log(qos).std(ddof=1):.3f})".strip()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=12.0, help="measuring time per (co-runner, half-cycle)")
    p.add_argument("--half-cycles-ms", default="100,250,1000", help="comma-separated paces to measure")
    p.add_argument("--skip-ms", type=float, default=50.0, help="left out after every pause or resume")
    p.add_argument("--only", help="comma-separated co-runner names (bubble, stream, sleep)")
    args = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("bench_reporter_pause: needs two CPUs (the reporter on one, the co-runner on the others)",
              file=sys.stderr)
        return 2
    half_cycles = [float(h) / 1000 for h in args.half_cycles_ms.split(",")]
    working_set = max(4, llc_bytes() // MIB // 2)
    programs = corunners(working_set)
    if args.only:
        programs = {k: v for k, v in programs.items() if k in args.only.split(",")}
    os.sched_setaffinity(0, {cpus[0]})
    reporter = Reporter(working_set)
    print(f"reporter: {working_set} MiB on CPU {cpus[0]}; co-runners on CPUs {cpus[1:]}; {args.seconds:g} s per "
          f"cell, {args.skip_ms:g} ms left out after each switch")  # fmt: skip
    for name, command in programs.items():
        tie = tied_to_this_process()

        def pinned_and_tied(tie: Callable[[], None] = tie) -> None:  # pinned before it runs: its forks inherit
            tie()
            os.sched_setaffinity(0, set(cpus[1:]))

        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True, preexec_fn=pinned_and_tied)  # fmt: skip
        try:
            reporter.window(1.5, 1.5)  # the co-runner starts and settles; the reporter stays warm
            if child.poll() is not None:
                print(f"{name}: exited at once ({child.returncode})", file=sys.stderr)
                continue
            for half in half_cycles:
                cycles = max(2, int(args.seconds / (2 * half)))
                qos, rtts = paired_qos(reporter, child.pid, half, cycles, args.skip_ms / 1000, cpus[1])
                shared = ~apart_mask(pd.Series(rtts)).to_numpy()  # the rule run reports use
                line = f"{name:8} half-cycle {half * 1000:6.0f} ms x {len(qos):3d} cycles: " + cell("QoS", qos)
                if not shared.all():
                    line += (f"; the cache line's round trip {rtts.min():.0f}-{rtts.max():.0f} ns: {int(shared.sum())} "
                             f"cycles under one L3 {cell('', qos[shared])}, {int((~shared).sum())} apart "
                             f"{cell('', qos[~shared])}")  # fmt: skip
                print(line, flush=True)
        finally:
            for sig in (signal.SIGCONT, signal.SIGKILL):  # only the group this script started
                try:
                    os.killpg(child.pid, sig)
                except ProcessLookupError:
                    pass
            child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
