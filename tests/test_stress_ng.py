"""The stress-ng backend: resident, ready-gated, cleaned up, and equivalent to the built-in bubbles."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import time
from pathlib import Path

import psutil
import pytest
from conftest import (
    TESTS,
    running_cli,
    smoke_dict,
    wait_all_gone,
    wait_for_children,
    wait_until,
    write_scenario,
)

from bubbleup.pressure.pool import BubblePool
from bubbleup.scenario import BubbleSpec
from bubbleup.sweep.worker import Runner, load_workload

MIB = 1 << 20

if shutil.which("stress-ng") is None:
    if os.environ.get("CI") == "true":
        pytest.fail("stress-ng is required under CI (.ci/run installs it)", pytrace=False)
    pytest.skip("stress-ng not installed (apt-get install stress-ng)", allow_module_level=True)


def anon_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


def test_stress_ng_bubbles_are_resident_when_ready() -> None:
    with BubblePool.uniform(BubbleSpec(backend="stress-ng", cpu_duty=0.0, pattern="none"), 2, 192) as pool:
        pool.start()
        pool.wait_ready(60)
        for b in pool.bubbles:
            held = max(anon_rss(p.pid) for p in psutil.Process(b.pid).children(recursive=True))
            assert abs(held / MIB - 192) <= 0.03 * 192, held / MIB
        assert pool.resident_mb >= 2 * 192 * 0.97


def test_stress_ng_cannot_be_asked_to_duty_cycle_a_memory_walk() -> None:
    with pytest.raises(ValueError, match="cannot duty-cycle a stream memory walk"):
        BubbleSpec(backend="stress-ng", cpu_duty=0.5, pattern="stream")


def test_stress_ng_bubbles_die_with_a_sigkilled_orchestrator(tmp_path: Path) -> None:
    data = smoke_dict(**{"bubble": {"backend": "stress-ng", "size_mb": 32, "cpu_duty": 0.3, "pattern": "none"},
                         "sweep.values": [2], "workload.inferences_per_setting": 100_000})  # fmt: skip
    with running_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "r"), "-q"],
                     cwd=tmp_path) as (proc, tree):  # fmt: skip
        # worker + 2 shims, each with stress-ng, its vm wrapper and vm worker, and a cpu worker
        tree += wait_for_children(proc.pid, 9)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        survivors = wait_all_gone(tree, 3.0)
    assert survivors == []


def timed_window(runner: Runner) -> tuple[float, float]:
    """(median latency, share of a CPU this process got) over 25 inferences of the workload."""
    me = psutil.Process()
    c0, t0 = sum(me.cpu_times()[:2]), time.monotonic()
    latency = statistics.median(runner.step("default", 2, 25).latencies())
    return latency, (sum(me.cpu_times()[:2]) - c0) / (time.monotonic() - t0)


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def wait_burning(pids: list[int], what: str, cpu_s: float = 0.1) -> None:
    """Return once each bubble's process tree has used ``cpu_s`` of CPU since now: stress-ng's cpu worker may
    start spinning after the shim reports its region ready, and a workload timed before would not feel it."""
    start = {pid: tree_cpu_seconds([pid]) for pid in pids}
    wait_until(lambda: all(tree_cpu_seconds([p]) - start[p] >= cpu_s for p in pids), 30, what)


def test_stress_ng_and_builtin_bubbles_slow_a_workload_alike() -> None:
    """The same two full-core bubbles, from either backend, take the same share of the CPU from a workload.

    Everything runs on one CPU (affinity is inherited by the bubbles and stress-ng's workers): three runnable
    tasks on two CPUs split 2 + 1, and whether the workload is the lone one is the load balancer's choice,
    held for seconds. On one CPU the three equal scheduling entities share it, deterministically. The slowdown
    is measured as the share of the CPU the workload got unloaded (windows before and after, ABBA order) over
    its share loaded: this VM's CPU itself changes speed by up to 1.8x for seconds at a time (the same
    unloaded window takes 8 or 15 ms with the whole CPU and no steal time), which made latency ratios
    between windows flip between ~1.6x and ~3x.
    Latency must still rise under load in every window."""
    runner = Runner(load_workload("python", {"function": "helpers_workload:spin_20ms", "path": str(TESTS)}))
    runner.workload.load()
    factors: dict[str, list[float]] = {"builtin": [], "stress-ng": []}
    bubble_cores: dict[str, list[float]] = {"builtin": [], "stress-ng": []}
    latencies: list[tuple[float, float, float]] = []
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    try:
        before, share_before = timed_window(runner)
        for backend in ["builtin", "stress-ng", "stress-ng", "builtin"] * 2:
            with BubblePool.uniform(BubbleSpec(backend=backend, cpu_duty=1.0, pattern="none"), 2, 64) as pool:
                pool.start()
                pool.wait_ready(60)
                pids = [b.pid for b in pool.bubbles]
                wait_burning(pids, f"both {backend} bubbles to burn CPU")
                c0, t0 = tree_cpu_seconds(pids), time.monotonic()
                loaded, share_loaded = timed_window(runner)
                bubble_cores[backend].append(round((tree_cpu_seconds(pids) - c0) / (time.monotonic() - t0), 2))
            after, share_after = timed_window(runner)
            factors[backend].append(round((share_before + share_after) / 2 / share_loaded, 2))
            latencies.append((round(before, 1), round(loaded, 1), round(after, 1)))
            before, share_before = after, share_after
    finally:
        os.sched_setaffinity(0, affinity)
    builtin, stress = statistics.median(factors["builtin"]), statistics.median(factors["stress-ng"])
    evidence = {"factors": factors, "bubble_cores": bubble_cores, "latencies (before, loaded, after)": latencies}
    # the bubbles really burned CPU: two of three equal entities on one CPU get ~2/3 of it
    assert all(c >= 0.5 for cores in bubble_cores.values() for c in cores), evidence
    assert all(lo > 1.3 * min(b, a) for b, lo, a in latencies), evidence  # and the workload felt it
    assert builtin > 2.0 and stress > 2.0, evidence  # the workload gets ~1/3 of the CPU: ~3x
    assert abs(stress / builtin - 1) <= 0.15, evidence


@pytest.mark.parametrize("backend", ["builtin", "stress-ng"])
def test_a_partial_duty_cycles_at_the_bubbles_period(backend: str) -> None:
    """A 0.5-duty bubble with a 20 ms period burns about half a core in *every* 200 ms window (ten periods),
    not a core in some and nothing in others: stress-ng left to itself picks random busy slices of up to
    0.5 s, and a workload step of a few hundred milliseconds then sees the bubble on or off, not its duty."""
    spec = BubbleSpec(backend=backend, size_mb=0, cpu_duty=0.5, pattern="none", period_ms=20.0)
    with BubblePool.uniform(spec, 1, 0) as pool:
        pool.start()
        pool.wait_ready(60)
        pids = [b.pid for b in pool.bubbles]
        wait_burning(pids, f"the {backend} bubble to burn CPU")
        shares = []
        for _ in range(15):  # 200 ms windows, measured back to back: each is a measurement, not a wait
            c0, t0 = tree_cpu_seconds(pids), time.monotonic()
            deadline = t0 + 0.2
            while time.monotonic() < deadline:
                time.sleep(0.01)
            shares.append(round((tree_cpu_seconds(pids) - c0) / (time.monotonic() - t0), 2))
    assert 0.35 <= statistics.median(shares) <= 0.65, shares
    # nearly every window between all on and all off (random 0-0.5 s slices put most windows at 0 or 1)
    assert sum(0.2 <= s <= 0.8 for s in shares) >= 12, shares


def test_a_stress_ng_bubble_reports_its_region_and_its_whole_tree() -> None:
    """What a stress-ng bubble says at ready is measured as the built-in bubble's is: the region is the vm
    worker's growth (not the memory every stress-ng process holds from its fork), and the resident total is the
    shim's whole process tree, as telemetry samples it (a bubble losing its region is read against it)."""
    with BubblePool.uniform(BubbleSpec(backend="stress-ng", cpu_duty=0.0, pattern="none"), 1, 4) as pool:
        pool.start()
        pool.wait_ready(60)
        ready = pool.bubbles[0].ready
        assert ready is not None
        tree = [psutil.Process(pool.bubbles[0].pid), *psutil.Process(pool.bubbles[0].pid).children(recursive=True)]
        held = sum(p.memory_info().rss for p in tree) / MIB
        assert 4 * 0.97 <= ready["region_mb"] <= 4.3, ready
        assert abs(ready["rss_mb"] - held) <= 0.05 * held, (ready, held)
