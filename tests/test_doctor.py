"""doctor reports every distorting factor with a verdict, from the real machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import PY, run_cli

from bubbleup.machine.doctor import CHECKS, diagnose


def test_doctor_covers_every_check_with_a_verdict(tmp_path: Path) -> None:
    done = run_cli(["doctor"], cwd=tmp_path, timeout=60)
    assert done.returncode == 0
    for name in ("CPU frequency", "SMT", "scheduler autogroup", "transparent huge pages", "swap", "available memory",
                 "cgroups", "TensorFlow", "stress-ng", "other busy processes"):
        assert f"] {name}: " in done.stdout
    assert len(done.stdout.strip().splitlines()) >= len(CHECKS)


def test_doctor_names_a_busy_process() -> None:
    spinner = subprocess.Popen([PY, "-c", "while True: pass"])
    try:
        busy = next(f for f in diagnose() if f.check == "other busy processes")
    finally:
        spinner.kill()
        spinner.wait()
    assert busy.verdict == "warn" and f"pid {spinner.pid}" in busy.detail


def test_doctor_reads_autogroup_as_the_kernel_says() -> None:
    finding = next(f for f in diagnose() if f.check == "scheduler autogroup")
    state = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if state.exists():
        assert ("on:" in finding.detail) == (state.read_text().strip() == "1")
    assert sys.platform != "linux" or finding.verdict in ("ok", "info")
