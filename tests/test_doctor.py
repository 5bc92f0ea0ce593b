"""doctor reports every distorting factor with a verdict, from the real machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import PY, run_cli

from bubbleup.machine.doctor import CHECKS, _autogroup, diagnose

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others


def test_doctor_covers_every_check_with_a_verdict(tmp_path: Path) -> None:
    done = run_cli(["doctor"], cwd=tmp_path, timeout=60)
    assert done.returncode == 0
    for name in ("CPU frequency", "SMT", "scheduler autogroup", "transparent huge pages", "swap", "available memory",
                 "cgroups", "TensorFlow", "stress-ng", "other busy processes"):
        assert f"] {name}: " in done.stdout
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(verdicts) == len(CHECKS), done.stdout  # one verdict line per check, none twice


def test_doctor_names_a_busy_process() -> None:
    spinner = subprocess.Popen([PY, "-c", "while True: pass"])
    try:
        busy = next(f for f in diagnose() if f.check == "other busy processes")
    finally:
        spinner.kill()
        spinner.wait()
    assert busy.verdict == "warn" and f"pid {spinner.pid}" in busy.detail


def test_doctor_reads_autogroup_as_the_kernel_says() -> None:
    """The verdict and the words follow /proc/sys/kernel/sched_autogroup_enabled, read here independently."""
    finding = next(f for f in diagnose() if f.check == "scheduler autogroup")
    state = Path("/proc/sys/kernel/sched_autogroup_enabled")
    value = state.read_text().strip() if state.exists() else None
    verdict, word = {"1": ("info", "on"), "0": ("ok", "off")}.get(value or "", ("ok", "unknown"))
    assert (finding.verdict, finding.detail.split(":")[0]) == (verdict, word), (value, finding)


@pytest.mark.parametrize(
    ("value", "verdict", "word"), [("1", "info", "on"), ("0", "ok", "off"), (None, "ok", "unknown")]
)
def test_doctor_autogroup_verdict_for_each_kernel_state(value: str | None, verdict: str, word: str) -> None:
    """Every state the file can be in, whatever this machine's is: on is worth knowing, off or unknown is fine."""
    finding = _autogroup({"sched_autogroup": value})
    assert (finding.verdict, finding.detail.split(":")[0]) == (verdict, word), finding


def test_a_cgroup_limit_is_read_where_the_process_is_not_at_the_root(tmp_path: Path) -> None:
    """Under ``systemd-run -p MemoryMax=2G`` the limit is on the process's own group (or one above it), not on
    the hierarchy's root, which the manifest used to read: it said no limit."""
    from bubbleup.machine.environment import _nearest_limit

    (tmp_path / "job" / "step").mkdir(parents=True)
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "job" / "memory.max").write_text("2147483648\n")
    (tmp_path / "job" / "step" / "memory.max").write_text("max\n")
    assert _nearest_limit(tmp_path, "/job/step", "memory.max") == "2147483648"  # the nearest group with a limit
    assert _nearest_limit(tmp_path, "/", "memory.max") == "max"  # none anywhere: as the root says
    assert _nearest_limit(tmp_path, "/job/step", "cpu.max") is None  # the file nowhere: not this version
