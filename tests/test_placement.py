"""CPU placement pins what it says, for the worker and every bubble, with both backends; bad placements are refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest
from conftest import run_cli, running_cli, smoke_dict, wait_for_children, write_scenario

from bubbleup.pressure.placement import allowed_cpus, assign

CPUS = allowed_cpus()
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="placement needs at least two CPUs to mean anything")


def test_assignments() -> None:
    allowed = (0, 1, 2, 3)
    free = assign("free", None, allowed)
    assert free.workload is None and free.for_bubble(0) is None
    spread = assign("spread", None, allowed)
    assert [spread.for_bubble(i) for i in range(6)] == [(0,), (1,), (2,), (3,), (0,), (1,)]
    apart = assign("apart", None, allowed)
    assert apart.workload == (0, 1) and [apart.for_bubble(i) for i in range(3)] == [(2,), (3,), (2,)]
    assert assign("apart", [3], allowed).bubble_cpus == (0, 1, 2)
    with pytest.raises(ValueError, match="placement: 'apart' needs a CPU"):
        assign("apart", [0, 1, 2, 3], allowed)
    with pytest.raises(ValueError, match="workload: CPU 7 is not among"):
        assign("spread", [7], allowed)


def test_pack_fills_the_cpus_the_workload_leaves_before_it_shares_the_workloads() -> None:
    # 0.3-core bubbles beside a workload on CPU 0 of two: three fit on CPU 1 (0.9), the fourth does not
    # and goes to CPU 0, the fifth too (CPU 1 would carry 1.2): the main job's dial.
    pack = assign("pack", [0], (0, 1), [0.3] * 5)
    assert pack.workload == (0,) and [pack.for_bubble(i) for i in range(5)] == [(1,), (1,), (1,), (0,), (0,)]
    # Full cores fill one spare CPU each, then share the workload's CPUs, least loaded first; the
    # default workload CPUs are apart's (the first half).
    full = assign("pack", None, (0, 1, 2, 3), [1.0] * 5)
    assert full.workload == (0, 1) and full.bubble_cpus == (2, 3, 0, 1, 0)
    # A bubble too big for the room left skips to the next spare CPU with room, not the workload's.
    assert assign("pack", [0], (0, 1, 2), [0.6, 0.6, 0.3]).bubble_cpus == (1, 2, 1)
    # No CPU to spare: every bubble shares the workload's (pack, unlike apart, is not refused).
    assert assign("pack", [0, 1], (0, 1), [0.5, 0.5, 0.5]).bubble_cpus == (0, 1, 0)


def affinities(orchestrator: int, n_children: int) -> dict[str, list[list[int]]]:
    """cpu_affinity of the worker and of every bubble process (stress-ng workers included), by role."""
    out: dict[str, list[list[int]]] = {"worker": [], "bubble": []}
    for pid in wait_for_children(orchestrator, n_children):
        try:
            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline())
            if "bubbleup.machine.cache_link" in cmd:
                continue  # apart's L3 check before each step: a helper of milliseconds, not a bubble
            role = "worker" if "bubbleup.sweep.worker" in cmd else "bubble"
            out[role].append(sorted(proc.cpu_affinity()))
        except psutil.NoSuchProcess:
            continue
    return out


def running(tmp_path: Path, cpus: dict, bubble: dict, count: int, n_children: int) -> dict[str, list[list[int]]]:
    data = smoke_dict(**{"sweep.values": [count], "workload.inferences_per_setting": 100_000, "bubble": bubble,
                         "cpus": cpus, "workload.options": {"working_sets_kb": [64], "rounds": 1}})  # fmt: skip
    args = ["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "run"), "-q"]
    with running_cli(args, cwd=tmp_path) as (proc, pids):
        # The orchestrator pins a bubble right after starting it (before the bubble reports ready), so a
        # bubble read in that instant is not pinned yet: read again until every bubble is, or a deadline.
        deadline = time.monotonic() + 10.0
        seen = affinities(proc.pid, n_children)
        while cpus["placement"] != "free" and time.monotonic() < deadline:
            if all(len(b) == 1 for b in seen["bubble"]):
                break
            seen = affinities(proc.pid, n_children)
        pids += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    placement = json.loads((tmp_path / "run" / "manifest.json").read_text())["cpu_placement"]
    seen["manifest"] = [placement]
    return seen


CPU_BUBBLE = {"kind": "cpu", "cpu_duty": 0.2}


@pytest.mark.beside_others  # CPU affinities only: nothing timed
@needs_two
def test_spread_pins_bubbles_round_robin_and_the_worker_where_asked(tmp_path: Path) -> None:
    seen = running(tmp_path, {"placement": "spread", "workload": [CPUS[0]]}, CPU_BUBBLE, 3, 4)
    assert seen["worker"] == [[CPUS[0]]]
    assert sorted(seen["bubble"]) == sorted([[CPUS[i % len(CPUS)]] for i in range(3)])
    assert seen["manifest"][0] == {"placement": "spread", "workload_cpus": [CPUS[0]], "bubble_cpus": list(CPUS)}


@pytest.mark.beside_others  # CPU affinities only: nothing timed
@needs_two
def test_pack_pins_each_bubble_where_its_duty_fits(tmp_path: Path) -> None:
    # 0.4-core bubbles beside a worker on the first CPU: two fill the second CPU (0.8), the next two
    # would overfill it and share the worker's.
    first = CPUS[0]
    seen = running(tmp_path, {"placement": "pack", "workload": [first]}, {"kind": "cpu", "cpu_duty": 0.4}, 4, 5)
    others = [c for c in CPUS if c != first]
    expected = [others[0], others[0], first, first] if len(CPUS) == 2 else None
    assert seen["worker"] == [[first]]
    assert all(len(b) == 1 for b in seen["bubble"]) and len(seen["bubble"]) == 4
    if expected is not None:
        assert sorted(seen["bubble"]) == sorted([[c] for c in expected])
        assert seen["manifest"][0] == {"placement": "pack", "workload_cpus": [first], "bubble_cpus": expected}
    else:  # more CPUs: both pairs fit on the spare ones, none on the worker's
        assert all(b[0] != first for b in seen["bubble"])


@pytest.mark.beside_others  # CPU affinities only: nothing timed
@needs_two
def test_apart_keeps_bubbles_off_the_workload_cpus(tmp_path: Path) -> None:
    seen = running(tmp_path, {"placement": "apart"}, CPU_BUBBLE, 2, 3)
    workload = list(CPUS[: max(1, (len(CPUS) + 1) // 2)])
    assert seen["worker"] == [workload]
    assert all(len(b) == 1 and b[0] not in workload for b in seen["bubble"]) and len(seen["bubble"]) == 2


@pytest.mark.beside_others  # CPU affinities only: nothing timed
@needs_two
@pytest.mark.skipif(shutil.which("stress-ng") is None and os.environ.get("CI") != "true", reason="no stress-ng")
def test_stress_ng_workers_inherit_the_bubble_pin(tmp_path: Path) -> None:
    bubble = {**CPU_BUBBLE, "backend": "stress-ng"}
    # the worker, 2 wrappers and at least one stress-ng process under each wrapper
    seen = running(tmp_path, {"placement": "spread", "workload": [CPUS[0]]}, bubble, 2, 5)
    assert len(seen["bubble"]) >= 4
    assert {tuple(b) for b in seen["bubble"]} <= {(CPUS[0],), (CPUS[1],)}
    assert {tuple(b) for b in seen["bubble"]} == {(CPUS[0],), (CPUS[1],)}


@pytest.mark.beside_others  # CPU affinities only: nothing timed
def test_free_pins_nothing(tmp_path: Path) -> None:
    seen = running(tmp_path, {"placement": "free"}, CPU_BUBBLE, 1, 2)
    assert seen["worker"] == [list(CPUS)] and seen["bubble"] == [list(CPUS)]


@pytest.mark.parametrize(
    ("cpus", "message"),
    [
        ({"workload": [999]}, "cpus.workload: CPU 999 is not among the CPUs allowed here"),
        ({"placement": "apart", "workload": list(CPUS)}, "cpus.placement: 'apart' needs a CPU the workload does not"),
        ({"placement": "pinned"}, "cpus.placement: Input should be 'free', 'spread', 'apart' or 'pack'"),
        ({"workload": []}, "cpus.workload: must name at least one CPU"),
    ],
)
@pytest.mark.beside_others  # input checks: nothing timed
def test_a_placement_that_cannot_be_honoured_is_refused_in_one_line(tmp_path: Path, cpus: dict, message: str) -> None:
    path = write_scenario(tmp_path, smoke_dict(cpus=cpus))
    done = run_cli(["validate", str(path)], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {path}: {message}" or (message in done.stderr and str(path) in done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1


@needs_two
@pytest.mark.slow
def test_with_the_default_placement_a_two_thread_kernel_never_gets_faster_with_more_bubbles(tmp_path: Path) -> None:
    """calibrate's dial check: a two-thread kernel whose threads truly run in parallel (matrix-matrix passes;
    two of them on two CPUs took half the time of two on one) swept over 0-4 full-core bubbles with the default
    placement, through the real orchestrator. Its median is non-decreasing within its CIs at every step, as
    every verdict is judged (at one CPU speed). The kernel the check used before, matrix-vector passes that
    hold the GIL between products, ran faster on one CPU than on two, and so "fell" when a bubble pushed both
    threads onto one CPU (README "Where bubbles sit")."""
    from bubbleup import dial_check
    from bubbleup.analysis import speed
    from bubbleup.analysis.monotone import falls_in
    from bubbleup.analysis.summary import summarise
    from bubbleup.store.reader import load_run

    # One sweep may meet a stalled VM (a CI run measured the kernel alone 2.4x slower than usual at one CPU speed,
    # which the speed probe cannot see: it counts the thread's CPU time, not time the host took the vCPU away).
    # The claim is about the dial, so a failed sweep is measured once more, and both are reported if both fail.
    failures = []
    for attempt in range(2):
        dial = dial_check.check(tmp_path / f"dial{attempt}")
        run = load_run(tmp_path / f"dial{attempt}")
        # One full-core bubble takes a CPU from a kernel that uses both. Compared at one CPU speed: in one CI run
        # the VM ran the 1-bubble point 1.29x faster (its speed probe) than the 0-bubble one, and the raw medians
        # rose only 1.19x (at one speed 1.51x); the probe leaves time-sharing out, so the bubble's effect stays.
        at_one_speed = summarise(speed.adjusted(run, speed.reference_ns(run))).set_index("value")["median_ms"]
        found = falls_in(run)
        if at_one_speed[1] > 1.3 * at_one_speed[0] and not found and dial["monotone"] and dial["falls"] == []:
            break
        failures.append((at_one_speed.round(2).to_dict(), [f.sentence() for f in found]))
    else:
        raise AssertionError(f"the dial fell or did not rise in both sweeps: {failures}")


def test_a_dial_that_fell_reaches_every_later_run_as_a_calibration_warning() -> None:
    from bubbleup.machine.calibrate import warnings_for

    fell = {"kernel": "k", "medians_ms": {"0": 3.0, "1": 2.5}, "monotone": False,
            "falls": ["k is not monotone: 3 ms at 0 bubbles but 2.5 ms at 1"]}  # fmt: skip
    held = {**fell, "medians_ms": {"0": 3.0, "1": 6.0}, "monotone": True, "falls": []}
    warned = warnings_for({"created_at": "now", "dial": fell, "results": []}, {"combined"})
    assert len(warned) == 1 and "not monotone" in warned[0] and "2.5 ms at 1" in warned[0]
    assert warnings_for({"created_at": "now", "dial": held, "results": []}, {"combined"}) == []
