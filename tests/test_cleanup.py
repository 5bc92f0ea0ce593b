"""However the orchestrator ends (Ctrl-C, SIGTERM, SIGHUP, SIGKILL), nothing it started survives it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import (
    descendants,
    resident_region_mb,
    running_cli,
    smoke_dict,
    wait_all_gone,
    wait_for_children,
    wait_until,
    write_scenario,
)

from bubbleup.pressure.pool import BACKEND_MODULES

BUBBLE_MB = 16  # smoke_dict's bubble size


def long_running(tmp_path: Path) -> Path:
    data = smoke_dict(**{
        "sweep.values": [2, 3],
        "workload.inferences_per_setting": 100_000,
        "workload.options": {"working_sets_kb": [256], "rounds": 4},
    })  # fmt: skip
    assert data["bubble"]["size_mb"] == BUBBLE_MB
    return write_scenario(tmp_path, data)


def resident_bubbles(orchestrator: int) -> list[int]:
    """PIDs of the orchestrator's bubbles that hold their whole region resident."""
    bubbles = [p for p in descendants(orchestrator) if BACKEND_MODULES["builtin"] in " ".join(p.cmdline())]
    return [p.pid for p in bubbles if resident_region_mb(p.pid) >= BUBBLE_MB]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_no_child_survives_the_orchestrator(tmp_path: Path, sig: signal.Signals) -> None:
    scenario = long_running(tmp_path)
    out = tmp_path / "run"
    with running_cli(["run", str(scenario), "--out", str(out), "-q"], cwd=tmp_path) as (proc, kids):
        kids += wait_for_children(proc.pid, 3)  # the worker and two bubbles
        # Signal only once the first point is under way: both bubbles hold their region, so the run's stop
        # handlers are installed and there is pressure to take down (not a process still starting up).
        wait_until(lambda: len(resident_bubbles(proc.pid)) >= 2, 60, f"both bubbles to hold {BUBBLE_MB} MiB")
        kids[:] = sorted(set(kids) | {k.pid for k in descendants(proc.pid)})
        proc.send_signal(sig)
        proc.wait(timeout=15)
        survivors = wait_all_gone(kids, 3.0)
    assert len(kids) >= 3
    assert survivors == [], f"still running after {sig.name}: {survivors}"
    if sig != signal.SIGKILL:
        assert proc.returncode == 130
        assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
