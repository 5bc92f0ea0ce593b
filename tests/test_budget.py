"""Device budgets on real cgroups: the OOM stays inside, CPU quotas hold, and no cgroup is ever left behind.

These need root (or a delegated cgroup). They skip, saying why, only where budgets cannot be applied
and CI is not "true"; in CI an unavailable budget is a failure, not a silent skip.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import kill_pids, wait_all_gone, wait_until

from bubbleup.pressure import cgroups
from bubbleup.pressure.budget import WRAP_JOIN_FAILED, Budget, availability
from bubbleup.pressure.budget_spec import PRESETS, BudgetSpec
from bubbleup.pressure.cgroups import BudgetUnavailable, Hierarchy, find_groups, limit_writes
from bubbleup.pressure.stale import sweep_stale

PY = sys.executable
MIB = 1 << 20
AVAILABLE, WHY = availability()
needs_cgroups = pytest.mark.skipif(
    not AVAILABLE and os.environ.get("CI") != "true", reason=f"device budgets cannot be applied here: {WHY}"
)

# A child as the harness starts them: join the budget first, then allocate (pages are charged where first touched).
ALLOC = """
import sys
import numpy as np
region = np.ones(int(sys.argv[1]) << 20, dtype=np.uint8)
print("allocated", flush=True)
sys.stdin.read()
"""

SPIN = """
print("joined", flush=True)
while True:
    pass
"""


def start(code: str, budget: Budget, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(budget.wrap([PY, "-c", code, *args]), env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


def group_dirs(budget: Budget) -> list[Path]:
    return [Path(f).parent for f in budget.procs_files()]


def in_budget(pid: int) -> bool:
    return cgroups.PREFIX in Path(f"/proc/{pid}/cgroup").read_text()


# ---------------------------------------------------------------------------------------------------------
# Real cgroups
# ---------------------------------------------------------------------------------------------------------


@needs_cgroups
def test_oom_kills_the_child_inside_not_the_parent() -> None:
    rss_before = psutil.Process().memory_info().rss
    with Budget(memory_mb=128) as budget:
        proc = start(ALLOC, budget, "256")
        out, _ = proc.communicate(timeout=30)
        stats = budget.stats()
    assert proc.returncode == -signal.SIGKILL
    assert "allocated" not in out
    assert stats["oom_kills"] >= 1
    assert stats["memory_peak_mb"] >= 120
    assert not in_budget(os.getpid())
    assert psutil.Process().memory_info().rss < rss_before + 32 * MIB  # the parent never held the region
    assert find_groups(os.getpid()) == []


@needs_cgroups
def test_child_within_budget_lives_is_charged_and_close_kills_it() -> None:
    budget = Budget(memory_mb=128)
    budget.apply()
    dirs = group_dirs(budget)
    proc = start(ALLOC, budget, "64")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "allocated"
        stats = budget.stats()
        assert proc.poll() is None
        assert stats["memory_current_mb"] >= 64
        assert stats["oom_kills"] == 0
        assert proc.pid in stats["pids"] and in_budget(proc.pid)
        budget.close()  # the child is still running inside
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        budget.close()
        kill_pids([proc.pid])
        proc.communicate()
    assert not any(d.exists() for d in dirs)
    assert find_groups(os.getpid()) == []
    assert budget.stats()["memory_current_mb"] is not None  # the last reading survives close()


@needs_cgroups
def test_cpu_quota_holds_a_spinning_child_to_half_a_core() -> None:
    if cgroups.host_cores() < 2:
        pytest.skip("a 0.5-core quota needs a host with more than one core to show")
    with Budget(cpus=0.5) as budget:
        assert budget.describe()["cpu_quota_us"] == 50_000
        proc = start(SPIN, budget)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "joined"
            p = psutil.Process(proc.pid)
            c0, t0 = sum(p.cpu_times()[:2]), time.monotonic()
            time.sleep(2.0)  # the measurement window (20 quota periods), not a wait for something to happen
            c1, t1 = sum(p.cpu_times()[:2]), time.monotonic()
            stats = budget.stats()
        finally:
            budget.close()
            proc.communicate()
    share = (c1 - c0) / (t1 - t0)
    assert 0.4 <= share <= 0.6, f"spinner got {share:.2f} of a core under a 0.5-core quota"
    assert stats["cpu_throttled_periods"] > 0
    assert find_groups(os.getpid()) == []


@needs_cgroups
def test_close_after_an_exception_removes_every_group_and_is_idempotent() -> None:
    procs: list[subprocess.Popen[str]] = []
    with pytest.raises(RuntimeError, match="orchestrator failed"), Budget(memory_mb=64, cpus=0.5) as budget:
        dirs = group_dirs(budget)
        late = budget.wrap(["true"])  # a command wrapped while the budget was open, started after it closed
        procs.append(start(SPIN, budget))
        assert procs[0].stdout is not None and procs[0].stdout.readline().strip() == "joined"
        raise RuntimeError("orchestrator failed mid-point")
    assert procs[0].wait(timeout=10) == -signal.SIGKILL
    procs[0].communicate()
    budget.close()
    assert not any(d.exists() for d in dirs)
    assert find_groups(os.getpid()) == []
    joined = subprocess.run(late, capture_output=True, text=True, timeout=10)
    assert joined.returncode == WRAP_JOIN_FAILED and "cgroup.procs" in joined.stderr


@needs_cgroups
def test_interpreter_exit_without_close_still_cleans_up(tmp_path: Path) -> None:
    code = """
import json, subprocess, time
from bubbleup.pressure.budget import Budget
b = Budget(memory_mb=64)
b.apply()
child = subprocess.Popen(b.wrap(["sleep", "60"]), stdout=subprocess.DEVNULL)
deadline = time.monotonic() + 10
while child.pid not in b.pids():
    if time.monotonic() > deadline:
        raise SystemExit(f"child {child.pid} never joined the budget")
    time.sleep(0.01)
print(json.dumps({"dirs": [f.rsplit("/", 1)[0] for f in b.procs_files()], "child": child.pid}), flush=True)
raise RuntimeError("crash without close")
"""
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout, done.stderr  # it reported its groups and child before crashing
    info = json.loads(done.stdout)
    try:
        assert done.returncode == 1 and "crash without close" in done.stderr
        assert not any(Path(d).exists() for d in info["dirs"])
        assert wait_all_gone([info["child"]], 5.0) == []
    finally:
        kill_pids([info["child"]])


@needs_cgroups
def test_sweep_stale_after_orchestrator_sigkill() -> None:
    code = """
import json, subprocess, time
from bubbleup.pressure.budget import Budget
busy, empty = Budget(memory_mb=64), Budget(memory_mb=64, cpus=0.5)
busy.apply()
empty.apply()
child = subprocess.Popen(busy.wrap(["sleep", "60"]), stdout=subprocess.DEVNULL)  # not holding our stdout open
deadline = time.monotonic() + 10
while child.pid not in busy.pids():
    if time.monotonic() > deadline:
        raise SystemExit(f"child {child.pid} never joined the budget")
    time.sleep(0.01)
dirs = lambda b: [f.rsplit("/", 1)[0] for f in b.procs_files()]
print(json.dumps({"busy": dirs(busy), "empty": dirs(empty), "child": child.pid}), flush=True)
time.sleep(60)  # an orchestrator mid-run, until the test SIGKILLs it
"""
    orchestrator = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
    assert orchestrator.stdout is not None
    line = orchestrator.stdout.readline()
    if not line:
        orchestrator.wait(timeout=10)
        pytest.fail(f"the orchestrator script ended before reporting its groups (status {orchestrator.returncode})")
    info = json.loads(line)
    try:
        with Budget(memory_mb=64) as live:  # a live run's group must survive every sweep
            orchestrator.kill()
            orchestrator.communicate()
            assert all(Path(d).exists() for d in info["busy"] + info["empty"])  # what SIGKILL leaves

            first = sweep_stale()
            assert set(info["empty"]) <= set(first.removed)
            assert all(any(d in b for b in first.busy) for d in info["busy"])
            assert all(Path(d).exists() for d in info["busy"]) and psutil.pid_exists(info["child"])

            second = sweep_stale(kill=True)
            assert set(info["busy"]) <= set(second.removed)
            assert wait_all_gone([info["child"]], 5.0) == []
            assert all(d.exists() for d in group_dirs(live))
        assert find_groups(orchestrator.pid) == []
    finally:
        kill_pids([info["child"]])


@needs_cgroups
def test_bubble_size_sweep_in_a_scaled_tx2_budget_ends_in_a_recorded_oom() -> None:
    """The issue's acceptance test, scaled down: a TX2's shape at 1/32 of its memory (256 MiB)."""
    spec = PRESETS["jetson-tx2"].scaled(1 / 32)
    assert (spec.memory_mb, spec.cpus, spec.preset) == (256, 6, "jetson-tx2")
    points = []
    for size_mb in (64, 128, 320):  # a bubble costs ~30 MiB (numpy) over its region
        with Budget.from_spec(spec) as budget:
            cmd = [PY, "-m", "bubbleup.pressure.kernel", "--size-mb", str(size_mb), "--cpu-duty", "0", "--pattern",
                   "none", "--reserve-mb", "0", "--parent-pid", str(os.getpid()), "--watch-stdin"]  # fmt: skip
            bubble = subprocess.Popen(budget.wrap(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert bubble.stdout is not None
            line = bubble.stdout.readline()  # "ready", or EOF when the OOM killer got it first
            event = json.loads(line)["event"] if line else "died"
            stats = budget.stats()
            described = budget.describe()
        bubble.communicate(timeout=10)  # close() killed it if it was still holding its region
        status = "ok" if event == "ready" else "failed"
        points.append((size_mb, status, bubble.returncode, stats["oom_kills"], stats["memory_peak_mb"]))

    assert [p[1] for p in points] == ["ok", "ok", "failed"], points
    assert points[-1][2] == -signal.SIGKILL and points[-1][3] >= 1
    assert all(p[3] == 0 and p[4] >= p[0] for p in points[:2])
    assert described["memory_limit_mb"] == 256
    host = cgroups.host_cores()
    assert described["cpus_effective"] == min(6, host)
    if host <= 6:
        assert any("no CPU limit applied" in n for n in described["notes"])
    assert not in_budget(os.getpid())  # the OOM stayed inside: the harness itself never joined the budget
    assert find_groups(os.getpid()) == []


@needs_cgroups
def test_not_root_is_named_as_the_reason() -> None:
    if os.geteuid() != 0:
        ok, why = availability()
    else:
        # Drop to nobody after start-up: the interpreter may live where nobody cannot read (/root/.pyenv).
        code = (
            "import os\nfrom bubbleup.pressure.budget import availability\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\nprint(repr(availability()))"
        )
        done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        ok, why = ast.literal_eval(done.stdout)
    assert not ok and "not root" in why and "\n" not in why


# ---------------------------------------------------------------------------------------------------------
# cgroup v2 mechanics, on whatever cgroup2 mount this machine has (the unified one here, with no memory or
# cpu controller in it, so the limits themselves are covered by limit_writes below)
# ---------------------------------------------------------------------------------------------------------


def _v2() -> Hierarchy | None:
    return next((h for h in cgroups.hierarchies() if h.version == 2), None)


needs_v2 = pytest.mark.skipif(_v2() is None or not os.access(_v2().mount, os.W_OK), reason="no writable cgroup2 mount")


@needs_v2
def test_v2_group_join_stats_and_kill() -> None:
    with Budget() as budget:  # no limits: a group for accounting and clean-up, which v2 serves on hybrid hosts
        if budget.describe()["cgroup_version"] != 2:
            pytest.skip("limit-less groups go to cgroup v1 here")
        (group,) = group_dirs(budget)
        proc = start(SPIN, budget)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "joined"
            assert f"0::/{group.relative_to(_v2().mount)}" in Path(f"/proc/{proc.pid}/cgroup").read_text()
            stats = wait_until(lambda: (st := budget.stats())["cpu_usage_s"] and st, 10,
                               "the group to account the spinner's CPU time")  # fmt: skip
            assert stats["cpu_usage_s"] > 0 and stats["pids"] == [proc.pid]
        finally:
            budget.close()  # cgroup.kill
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not group.exists()


@needs_v2
def test_v2_no_internal_process_rule_is_explained() -> None:
    with Budget() as budget:
        if budget.describe()["cgroup_version"] != 2:
            pytest.skip("limit-less groups go to cgroup v1 here")
        (group,) = group_dirs(budget)
        candidates = sorted(set((cgroups.read_file(group.parent / "cgroup.controllers") or "").split()))
        if not candidates:
            pytest.skip("no controller at all in the cgroup2 mount")
        controller = frozenset(candidates[:1])
        enabled = cgroups.enable_controllers(group.parent, controller)  # make it available to our group
        proc = start(SPIN, budget)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "joined"
            with pytest.raises(BudgetUnavailable, match="no-internal-process rule"):
                cgroups.enable_controllers(group, controller)
        finally:
            budget.close()
            proc.communicate()
            cgroups.restore_controllers(group.parent, enabled)


# ---------------------------------------------------------------------------------------------------------
# No cgroups needed
# ---------------------------------------------------------------------------------------------------------


def test_limit_files_for_v1_and_v2() -> None:
    assert limit_writes(2, 128 * MIB, 50_000, swap=False) == [
        ("memory.max", str(128 * MIB), True),
        ("memory.swap.max", "0", False),
        ("memory.oom.group", "0", False),
        ("cpu.max", "50000 100000", True),
    ]
    assert limit_writes(2, 128 * MIB, None, swap=True) == [
        ("memory.max", str(128 * MIB), True),
        ("memory.oom.group", "0", False),
    ]
    assert limit_writes(1, 128 * MIB, 50_000, swap=False) == [
        ("memory.limit_in_bytes", str(128 * MIB), True),
        ("memory.memsw.limit_in_bytes", str(128 * MIB), False),
        ("cpu.cfs_period_us", "100000", True),
        ("cpu.cfs_quota_us", "50000", True),
    ]


def test_specs_and_presets() -> None:
    assert BudgetSpec.parse("jetson-tx2") == BudgetSpec(memory_mb=8192, cpus=6, preset="jetson-tx2")
    assert set(PRESETS) >= {"jetson-tx2", "jetson-nano", "raspberry-pi-4"}
    scaled = BudgetSpec.parse({"preset": "jetson-tx2", "memory_mb": 1024})
    assert scaled == BudgetSpec(memory_mb=1024, cpus=6, preset="jetson-tx2")
    assert PRESETS["jetson-tx2"].scaled(1 / 8) == scaled
    assert BudgetSpec.parse({"memory_mb": 512, "swap": True}) == BudgetSpec(memory_mb=512, swap=True)
    assert BudgetSpec.parse(None) is None
    for bad, message in (
        ("jetson-tx3", "unknown budget preset 'jetson-tx3'; known: jetson-nano"),
        ({"memory": 512}, "unknown budget key"),
        ({"swap": True}, "needs memory_mb, cpus or a preset"),
        ({"memory_mb": "1G"}, "whole number of MiB"),
        ({"memory_mb": 4}, "at least 16"),
        ({"cpus": 0}, "cpus must be at least"),
        ({"cpus": True}, "number of cores"),
        (["jetson-tx2"], "preset name or a mapping"),
    ):
        with pytest.raises(ValueError, match=message):
            BudgetSpec.parse(bad)  # type: ignore[arg-type]


def test_missing_controller_and_platform_are_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_only = Hierarchy(1, Path("/sys/fs/cgroup/cpu"), frozenset({"cpu"}), Path("/sys/fs/cgroup/cpu"))
    with pytest.raises(BudgetUnavailable, match="the memory controller is missing"):
        cgroups.plan_controllers([cpu_only], {"memory"})
    with pytest.raises(BudgetUnavailable, match="no cgroup filesystem is mounted"):
        cgroups.plan_controllers([], {"memory"})
    monkeypatch.setattr(cgroups.sys, "platform", "darwin")
    with pytest.raises(BudgetUnavailable, match="need Linux cgroups; this is darwin"):
        cgroups.plan_controllers([cpu_only], {"cpu"})


def test_hierarchies_are_read_from_mountinfo(tmp_path: Path) -> None:
    (tmp_path / "v2" / "user.slice" / "session-3.scope").mkdir(parents=True)
    (tmp_path / "mem" / "docker" / "abc").mkdir(parents=True)
    (tmp_path / "mountinfo").write_text(
        f"30 1 0:26 / {tmp_path}/v2 rw - cgroup2 cgroup2 rw,nsdelegate\n"
        f"31 1 0:27 /docker/abc {tmp_path}/mem rw - cgroup cgroup rw,memory\n"
        f"32 1 0:27 /docker/abc {tmp_path}/mem2 rw - cgroup cgroup rw,memory\n"  # a bind mount: dropped
        f"33 1 0:28 / {tmp_path}/proc rw - proc proc rw\n"
    )
    (tmp_path / "cgroup").write_text("4:memory:/docker/abc\n0::/user.slice/session-3.scope\n")
    v2, mem = cgroups.hierarchies(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert (v2.version, v2.own) == (2, tmp_path / "v2" / "user.slice" / "session-3.scope")
    assert (mem.version, mem.controllers, mem.own) == (1, frozenset({"memory"}), tmp_path / "mem")
    assert cgroups.v2_candidates(v2) == [tmp_path / "v2" / "user.slice", tmp_path / "v2"]


def test_scaled_tx2_budget_ends_a_size_sweep_in_a_recorded_oom(tmp_path: Path) -> None:
    """The orchestrator applies the scenario's budget to worker and bubbles; the run survives the OOM."""
    import pandas as pd
    from conftest import run_cli, smoke_dict, write_scenario

    data = smoke_dict(bubble={"kind": "memory"}, sweep={"axis": "size_mb", "values": [64, 128, 512],
                                                        "settle_s": 0.1},
                      budget={"preset": "jetson-tx2", "memory_mb": 384})  # fmt: skip
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "r"), "-q", "--no-report"],
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    points = pd.read_csv(tmp_path / "r" / "points.csv")
    by_size = points.groupby("value")["status"].agg(set).to_dict()
    assert by_size[64] == {"ok"} and by_size[128] == {"ok"} and by_size[512] == {"failed"}
    assert points[points["value"] == 512]["error"].str.contains("OOM-killed inside the budget").all()
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["budget"]["memory_limit_mb"] == 384 and manifest["budget_final_stats"]["oom_kills"] >= 1
    assert cgroups.find_groups() == []  # the run removed its cgroup


def test_validate_says_which_points_fill_the_budget_before_the_run(tmp_path: Path) -> None:
    from conftest import run_cli, smoke_dict, write_scenario

    sweep = {"sweep.axis": "size_mb", "sweep.count": 2, "sweep.values": [0, 64, 128]}
    data = smoke_dict(**sweep, budget={"memory_mb": 128})
    done = run_cli(["validate", str(write_scenario(tmp_path, data))], tmp_path)
    assert done.returncode == 0, done.stderr
    # two bubbles of 64 MiB fill 128 MiB; of 0 MiB they do not
    assert "at size_mb=64, 128 the bubbles alone fill the 128 MiB budget" in done.stdout, done.stdout
    data["budget"] = {"memory_mb": 1024}
    done = run_cli(["validate", str(write_scenario(tmp_path, data))], tmp_path)
    assert done.returncode == 0 and "budget" not in done.stdout, done.stdout
