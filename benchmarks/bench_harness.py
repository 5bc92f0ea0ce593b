"""Harness overhead and bubble start-up cost, measured side by side in one run.

    python benchmarks/bench_harness.py [--inferences 400] [--gib 2] [--bubbles 4]

(a) median latency of a function measured through the harness (worker process, pipe,
    per-inference RSS) / the same function timed in a bare perf_counter loop. Target <= 1.02.
(c) median latency through the harness with the telemetry sampler running at 10 Hz in the
    orchestrator / with it off. Target <= 1.02.
(b) time for N bubbles totalling X GiB to be ready (resident, verified) / time for one
    process to start, import numpy and fill X GiB. Target <= 1.3.

Machines here are noisy: each measurement alternates A/B several rounds and the ratio
of medians is printed, never an absolute time alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bubbleup.pressure.pool import BubblePool
from bubbleup.scenario import BubbleSpec
from bubbleup.sweep.worker_client import WorkerClient

FUNCTION = "benchmarks.kernels:matmul_1ms"


BARE_LOOP = """
import statistics, sys, time
sys.path.insert(0, {root!r})
from benchmarks.kernels import matmul_1ms
perf = time.perf_counter_ns
for _ in range(10):
    matmul_1ms()
lat = []
for _ in range({n}):
    t0 = perf()
    matmul_1ms()
    lat.append((perf() - t0) / 1e6)
print(statistics.median(lat))
"""


def bare_median(n: int) -> float:
    """The same function in a bare loop, in a fresh process started like a worker (same env)."""
    from bubbleup.procs import _LEAN_ENV

    root = str(Path(__file__).resolve().parents[1])
    code = BARE_LOOP.format(root=root, n=n)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **_LEAN_ENV})  # fmt: skip
    return float(out.stdout)


def harness_median(client: WorkerClient, n: int) -> float:
    res = client.step("default", 10, n, timeout_s=600)
    return statistics.median(res.latencies())


@contextmanager
def kernel_worker() -> Iterator[WorkerClient]:
    """A harness worker with the benchmark kernel loaded as a ``python`` workload, closed on the way out."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        client = WorkerClient(Path(tmp) / "worker.log", own_session=False)
        try:
            client.load("python", {"function": FUNCTION, "path": str(root)}, timeout_s=120)
            yield client
        finally:
            client.close()


def overhead(n: int, rounds: int) -> None:
    with kernel_worker() as client:
        ratios = []
        for _ in range(rounds):
            h, b = harness_median(client, n), bare_median(n)
            ratios.append(h / b)
            print(f"  harness {h:.4f} ms  bare {b:.4f} ms  ratio {h / b:.3f}")
    print(f"(a) harness / bare median latency: {statistics.median(ratios):.3f}  (target <= 1.02)")


def telemetry_cost(n: int, rounds: int) -> None:
    """Alternating which goes first (ABBA): the VM's speed drifts over seconds, and a fixed order reads the drift."""
    from bubbleup.machine.telemetry import Sampler

    every_s = 0.1  # the sampler's interval (10 Hz)

    def with_sampler(client: WorkerClient) -> float:
        sampler = Sampler(every_s, {"repeat": 0, "value": 0}, time.time(),
                          lambda: {"worker": [client.pid], "bubbles": []})  # fmt: skip
        sampler.start()
        t0 = time.monotonic()
        on = harness_median(client, n)
        expected = (time.monotonic() - t0) / every_s
        samples = len(sampler.stop())
        if samples < 0.5 * expected:  # a sampler that died (it did, from 12-01 to 12-06) measures nothing
            raise SystemExit(f"the telemetry sampler took {samples} samples in ~{expected:.0f} intervals")
        return on

    with kernel_worker() as client:
        ratios = []
        for i in range(rounds):
            if i % 2 == 0:
                on, off = with_sampler(client), harness_median(client, n)
            else:
                off, on = harness_median(client, n), with_sampler(client)
            ratios.append(on / off)
            print(f"  telemetry on {on:.4f} ms  off {off:.4f} ms  ratio {on / off:.3f}")
    print(f"(c) harness latency with telemetry on / off: {statistics.median(ratios):.3f}  (target <= 1.02)")


def fill_one_process(gib: float) -> float:
    code = f"import numpy as np; a = np.empty({int(gib * 2**30)}, np.uint8); a[::4096] = 1; a[-1] = 1"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def bubbles_ready(gib: float, count: int) -> float:
    size = int(gib * 1024 / count)
    t0 = time.perf_counter()
    with BubblePool.uniform(BubbleSpec(cpu_duty=0.0, pattern="none"), count, size) as pool:
        pool.start()
        pool.wait_ready(300)
        return time.perf_counter() - t0


def readiness(gib: float, count: int, rounds: int) -> None:
    ratios = []
    for _ in range(rounds):
        b, f = bubbles_ready(gib, count), fill_one_process(gib)
        ratios.append(b / f)
        print(f"  {count} bubbles ready {b:.3f} s  one numpy process {f:.3f} s  ratio {b / f:.3f}")
    print(f"(b) {count} bubbles x {gib / count:.2f} GiB ready / one process filling {gib} GiB: "
          f"{statistics.median(ratios):.3f}  (target <= 1.3)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inferences", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--gib", type=float, default=2.0)
    p.add_argument("--bubbles", type=int, default=4)
    args = p.parse_args()
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}")
    overhead(args.inferences, args.rounds)
    telemetry_cost(args.inferences * 5, args.rounds * 2)  # ~2 s a side: the sampler's 10 Hz is seen 20 times
    readiness(args.gib, args.bubbles, args.rounds)


if __name__ == "__main__":
    main()
