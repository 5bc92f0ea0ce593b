"""However the orchestrator ends (Ctrl-C, SIGTERM, SIGKILL), nothing it started survives it."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import kill_pids, smoke_dict, start_cli, wait_all_gone, wait_for_children, write_scenario


def long_running(tmp_path: Path) -> Path:
    data = smoke_dict(**{
        "sweep.values": [2, 3],
        "workload.inferences_per_setting": 100_000,
        "workload.options": {"working_sets_kb": [256], "rounds": 4},
    })  # fmt: skip
    return write_scenario(tmp_path, data)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_no_child_survives_the_orchestrator(tmp_path: Path, sig: signal.Signals) -> None:
    scenario = long_running(tmp_path)
    out = tmp_path / "run"
    proc = start_cli(["run", str(scenario), "--out", str(out), "-q"], cwd=tmp_path)
    kids: list[int] = []
    try:
        kids = wait_for_children(proc.pid, 3)  # the worker and two bubbles
        time.sleep(0.5)
        proc.send_signal(sig)
        proc.wait(timeout=15)
        survivors = wait_all_gone(kids, 3.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_pids([k for k in kids if k])
    assert survivors == [], f"still running after {sig.name}: {survivors}"
    if sig != signal.SIGKILL:
        assert proc.returncode == 130
        assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
