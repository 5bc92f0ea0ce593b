"""Bubbles hold what they are asked to hold, burn what they are asked to burn, and die with their parent."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import PY, ROOT, alive, wait_all_gone

from bubbleup.errors import BubbleFailed
from bubbleup.machine.telemetry import core_share
from bubbleup.pressure.pool import BubblePool
from bubbleup.scenario import BubbleSpec

MIB = 1 << 20


def external_rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MIB


def test_256_mib_bubble_is_resident_within_3_percent() -> None:
    # Baseline: an identical bubble with no region, measured from outside with psutil.
    spec = BubbleSpec(cpu_duty=0.0, pattern="none")
    with BubblePool.uniform(spec, 1, 0) as empty, BubblePool.uniform(spec, 1, 256) as full:
        empty.start()
        full.start()
        empty.wait_ready(60)
        full.wait_ready(60)
        region = external_rss_mb(full.pids()[0]) - external_rss_mb(empty.pids()[0])
    assert abs(region - 256) <= 0.03 * 256, region


@pytest.mark.parametrize("pattern", ["stream", "random", "none"])
def test_half_duty_bubble_uses_half_a_core(pattern: str) -> None:
    with BubblePool.uniform(BubbleSpec(cpu_duty=0.5, pattern=pattern), 1, 32) as pool:
        pool.start()
        pool.wait_ready(60)
        share = core_share(pool.pids()[0], 2.0)
        delivered = pool.stop()[0]
    assert 0.4 <= share <= 0.6, share
    assert 0.4 <= delivered["core_share"] <= 0.6
    if pattern != "none":
        assert delivered["mb_per_s"] > 0  # the region is really walked


def test_zero_duty_bubble_holds_memory_without_cpu() -> None:
    with BubblePool.uniform(BubbleSpec(cpu_duty=0.0, pattern="stream"), 1, 64) as pool:
        pool.start()
        pool.wait_ready(60)
        assert core_share(pool.pids()[0], 1.0) < 0.05
        assert pool.resident_mb >= 0.97 * 64


def test_pool_starts_n_bubbles_and_stops_them_all() -> None:
    pool = BubblePool.uniform(BubbleSpec(cpu_duty=0.1, pattern="random"), 3, 16)
    pool.start()
    pool.wait_ready(60)
    pids = pool.pids()
    assert len(set(pids)) == 3 and all(alive(p) for p in pids)
    assert pool.resident_mb >= 3 * 16 * 0.97
    pool.stop()
    assert wait_all_gone(pids, 3.0) == []


def test_own_session_placement_gives_each_bubble_its_own_session() -> None:
    import os

    with BubblePool.uniform(BubbleSpec(cpu_duty=0.0, placement="own-session"), 2, 0) as own:
        own.start()
        own.wait_ready(60)
        sessions = {os.getsid(p) for p in own.pids()}
    assert len(sessions) == 2 and os.getsid(0) not in sessions
    with BubblePool.uniform(BubbleSpec(cpu_duty=0.0, placement="shared-session"), 2, 0) as shared:
        shared.start()
        shared.wait_ready(60)
        assert {os.getsid(p) for p in shared.pids()} == {os.getsid(0)}


def test_bubble_refuses_to_eat_the_reserve_and_the_pool_names_it() -> None:
    huge_reserve = int(psutil.virtual_memory().available / MIB) + 1024
    # The pool refuses before starting anything ...
    with BubblePool.uniform(BubbleSpec(cpu_duty=0.0), 2, 64, reserve_mb=huge_reserve) as pool:
        with pytest.raises(BubbleFailed, match=r"refusing to start 2 bubble\(s\) holding about 192 MiB: only 0 MiB"):
            pool.start()
        assert pool.bubbles == []
    # ... and a bubble started on its own (``bubbleup bubble``, or memory taken since the pool looked) checks itself
    done = subprocess.run([PY, "-m", "bubbleup", "bubble", "--size-mb", "64", "--reserve-mb", str(huge_reserve)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "refusing to allocate 64 MiB" in done.stderr, done.stderr


def test_bubbles_that_fit_one_by_one_but_not_together_are_refused_together() -> None:
    """Each bubble checks its own size against the memory it sees, and they all look at the same moment: two
    bubbles of 64 MiB with 150 MiB to spare each pass their own check. The pool checks what they hold together."""
    spare = 150
    reserve = int(psutil.virtual_memory().available / MIB) - spare
    with BubblePool.uniform(BubbleSpec(cpu_duty=0.0), 2, 64, reserve_mb=reserve) as pool:
        with pytest.raises(BubbleFailed, match="refusing to start 2 bubble"):
            pool.start()
        assert pool.bubbles == []
    one = BubblePool.uniform(BubbleSpec(cpu_duty=0.0), 1, 64, reserve_mb=reserve)
    assert one._memory_check(one.members) is None  # one fits: no refusal (and no co-runner to share with)
    assert BubblePool.uniform(BubbleSpec(cpu_duty=0.0), 2, 64, reserve_mb=reserve, allow_unsafe=True)._memory_check(
        [(BubbleSpec(cpu_duty=0.0), 64)] * 2) is None  # an opted-in scenario is not checked  # fmt: skip


def test_standalone_bubble_command_runs_until_ctrl_c() -> None:
    proc = subprocess.Popen([PY, "-m", "bubbleup", "bubble", "--size-mb", "32", "--cpu-duty", "0.2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready" and ready["region_mb"] >= 0.97 * 32
        time.sleep(0.5)  # a measurement window: ten 50 ms duty periods for the core share it reports on stopping
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stopped = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0 and stopped["event"] == "stopped"
    assert 0.1 <= stopped["core_share"] <= 0.3


@pytest.mark.parametrize(("flags", "words"), [
    (["--size-mb", "-5"], "must not be negative"),
    (["--size-mb", "8", "--period-ms", "nan"], "--period-ms must be a finite number"),
    (["--size-mb", "abc"], "argument --size-mb: invalid int value: 'abc'"),
    (["--size-mb", str(1 << 40)], "refusing"),  # past the memory available: a person's bad input, exit 2
])  # fmt: skip
@pytest.mark.beside_others  # input checks: nothing timed
def test_bubble_command_rejects_bad_flags_in_one_line(flags: list[str], words: str) -> None:
    done = subprocess.run([PY, "-m", "bubbleup", "bubble", *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and words in lines[0], done.stderr


PARENT = """
import sys, time
from bubbleup.pressure.pool import BubblePool
from bubbleup.scenario import BubbleSpec
from bubbleup.machine.telemetry import core_share
pool = BubblePool.uniform(BubbleSpec(cpu_duty=0.2), 3, 16)
pool.start(); pool.wait_ready(60)
print(" ".join(map(str, pool.pids())), flush=True)
time.sleep(3600)  # hold the bubbles until the test SIGKILLs this parent
"""


def test_bubbles_die_when_their_parent_is_sigkilled() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 3 and all(alive(p) for p in pids)
        parent.kill()
        parent.wait()
        survivors = wait_all_gone(pids, 3.0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert survivors == []
