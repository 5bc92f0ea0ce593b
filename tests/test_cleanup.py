"""However the orchestrator ends (Ctrl-C, SIGTERM, SIGHUP, SIGKILL), nothing it started survives it."""

from __future__ import annotations

import json
import os
import shutil
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

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others

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


def test_a_scratch_directory_is_swept_once_its_owner_is_gone_and_never_before(tmp_path: Path) -> None:
    """procs.owned_tmpdir names a directory by its owner's PID and removes those whose owner is gone: dead, or a
    zombie (exited, not yet reaped: a Ray worker whose node was killed). A live owner's is kept."""
    import subprocess
    import sys
    import tempfile

    import psutil

    from bubbleup import procs

    prefix = f"bubbleup-test-scratch-{tmp_path.name}-"
    root = Path(tempfile.gettempdir())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_until(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, 30, "the child exited")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        made = {name: Path(tempfile.mkdtemp(prefix=f"{prefix}{p.pid}-"))
                for name, p in (("live", live), ("zombie", zombie), ("dead", dead))}  # fmt: skip
        mine = procs.owned_tmpdir(prefix)
        assert made["live"].is_dir() and not made["zombie"].exists() and not made["dead"].exists()
        assert mine.is_dir() and mine.name.startswith(f"{prefix}{os.getpid()}-")
    finally:
        live.kill()
        live.wait()
        zombie.wait()
        for left in root.glob(f"{prefix}*"):
            shutil.rmtree(left, ignore_errors=True)


def test_a_program_whose_shim_died_before_it_was_tied_does_not_run() -> None:
    """The hook a shim gives a program it starts: from the shim, the program runs (and would get SIGKILL when the
    shim dies); from any other parent, the shim died between fork and prctl and the program exits unrun."""
    import subprocess

    from bubbleup.procs import tied_to_this_process

    hook = tied_to_this_process()
    here = subprocess.run(["sh", "-c", "echo ran"], capture_output=True, text=True, preexec_fn=hook, timeout=30)
    assert here.stdout == "ran\n"
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # another process than the hook's maker: its program is orphaned from the hook's view
        try:
            done = subprocess.run(["sh", "-c", "echo ran"], capture_output=True, preexec_fn=hook, timeout=30)
            os.write(write, done.stdout + b"|" + str(done.returncode).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as got:
        said = got.read()
    os.waitpid(child, 0)
    assert said == b"|0", said  # exited before exec: nothing printed
