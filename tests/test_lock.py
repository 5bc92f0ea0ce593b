"""One bubbleup run per machine: a second run is refused while the first holds the lock, a killed run leaves
no stale lock, and a run that opts in with ``--allow-concurrent`` runs but is INVALID, and so is the one it met."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import descendants, running_cli, smoke_dict, wait_all_gone, wait_until, write_scenario

from bubbleup.machine import lock

HOLD = """
import sys
from bubbleup.machine import lock
held = lock.acquire(sys.argv[1], directory=__import__("pathlib").Path(sys.argv[2]))
print("held", flush=True)
sys.stdin.read()
"""


def _holder(run_dir: Path, directory: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(directory)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_refuses_a_second_holder_and_dies_with_the_first(tmp_path: Path) -> None:
    directory = tmp_path / "lock"
    first = _holder(tmp_path / "run-a", directory)
    try:
        with pytest.raises(lock.MachineBusy, match=rf"pid {first.pid}, run directory {tmp_path / 'run-a'}"):
            lock.acquire(tmp_path / "run-b", directory=directory)
        with lock.acquire(tmp_path / "run-c", allow_concurrent=True, directory=directory) as held:
            assert [h.pid for h in held.found_at_start] == [first.pid]
            assert [c["pid"] for c in held.concurrent()] == [first.pid]
        first.kill()  # SIGKILL: no chance to clean up; the kernel drops its flock
        first.wait()
        with lock.acquire(tmp_path / "run-d", directory=directory) as held:
            assert held.found_at_start == []
            assert lock.live_holders(directory) == [held.me]
        assert lock.live_holders(directory) == []
        assert sorted(p.name for p in directory.iterdir()) == [lock.GUARD]  # the dead run's files were swept
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_one_run_directory_never_gets_two_writers(tmp_path: Path) -> None:
    directory = tmp_path / "lock"
    with lock.acquire(tmp_path / "run", directory=directory):
        code = "import sys, pathlib; from bubbleup.machine import lock\n" \
               "lock.acquire(sys.argv[1], allow_concurrent=True, directory=pathlib.Path(sys.argv[2]))"  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), str(directory)], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0 and "is being written by another bubbleup run" in done.stderr


def _long_run(tmp_path: Path) -> Path:
    data = smoke_dict(**{
        "name": "holder",
        "sweep.values": [1],
        "workload.inferences_per_setting": 100_000,
        "workload.options": {"working_sets_kb": [64], "rounds": 2},
    })  # fmt: skip
    return write_scenario(tmp_path, data, "long.yaml")


def _tiny_run(tmp_path: Path) -> Path:
    return write_scenario(tmp_path, smoke_dict(**{"sweep.values": [0], "workload.options.working_sets_kb": [64]}),
                          "tiny.yaml")  # fmt: skip


def _holds(pid: int) -> bool:
    return any(h.pid == pid for h in lock.live_holders(lock.lock_dir()))


@pytest.mark.beside_others  # processes and files only: nothing timed, no validity verdict
def test_a_second_run_is_refused_until_the_first_is_killed(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    with running_cli(["run", str(_long_run(tmp_path)), "--out", str(first_dir), "-q"], cwd=tmp_path) as (proc, kids):
        wait_until(lambda: _holds(proc.pid), 60, "the first run to hold the machine")
        refused = subprocess.run([sys.executable, "-m", "bubbleup", "run", str(_tiny_run(tmp_path)), "--out",
                                  str(second_dir), "-q"], cwd=tmp_path, capture_output=True, text=True,
                                 timeout=120)  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {proc.pid}, run directory {first_dir}" in lines[0], refused.stderr
        assert "--allow-concurrent" in lines[0]
        assert not second_dir.exists()  # refused before anything was written
        kids += [k.pid for k in descendants(proc.pid)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=15)
        assert wait_all_gone(kids, 10.0) == []
    done = subprocess.run([sys.executable, "-m", "bubbleup", "run", str(_tiny_run(tmp_path)), "--out", str(second_dir),
                           "-q", "--no-report"], cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr  # the killed run left no stale lock
    assert json.loads((second_dir / "manifest.json").read_text())["concurrent_runs"] == []


@pytest.mark.beside_others  # the lock only: nothing timed; the concurrent reason, which nothing beside it removes
def test_allow_concurrent_runs_and_both_runs_are_invalid(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    with running_cli(["run", str(_long_run(tmp_path)), "--out", str(first_dir), "-q", "--no-report"],
                     cwd=tmp_path) as (proc, kids):  # fmt: skip
        wait_until(lambda: _holds(proc.pid), 60, "the first run to hold the machine")
        second = subprocess.Popen([sys.executable, "-m", "bubbleup", "run", str(_tiny_run(tmp_path)), "--out",
                                   str(second_dir), "-q", "--no-report", "--allow-concurrent"], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        kids.append(second.pid)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert "Result is: INVALID" in out and "concurrent: 1 other bubbleup run(s) shared the machine" in out
        meta = json.loads((second_dir / "manifest.json").read_text())
        assert [c["pid"] for c in meta["concurrent_runs"]] == [proc.pid]
        assert [r["code"] for r in meta["validity"]["reasons"]].count("concurrent") == 1
        kids += [k.pid for k in descendants(proc.pid)]
        proc.send_signal(signal.SIGINT)  # the first run ends as interrupted, and says who found it meanwhile
        first_out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    first = json.loads((first_dir / "manifest.json").read_text())
    assert [(c["pid"], c["relation"]) for c in first["concurrent_runs"]] == [
        (second.pid, "started while this run was running")
    ]
    assert first["validity"]["valid"] is False and "concurrent" in [r["code"] for r in first["validity"]["reasons"]]
    assert "Result is: INVALID" in first_out


def test_the_lock_dir_is_per_user_and_the_same_in_every_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one user started from shells with different environments (ssh, cron, env -i) must find
    each other: the directory does not follow TMPDIR or XDG_RUNTIME_DIR."""
    monkeypatch.delenv(lock.LOCK_DIR_ENV)
    plain = lock.lock_dir()
    assert plain.name == f"bubbleup-{os.getuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # gettempdir() caches; make it read TMPDIR again
    try:
        assert lock.lock_dir() == plain
    finally:
        tempfile.tempdir = None


def test_a_lock_whose_directory_vanished_is_released_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing the lock directory under a running run (a cleaner, a logout) must not turn its end into a
    traceback that hides how the run ended."""
    import shutil

    monkeypatch.setenv(lock.LOCK_DIR_ENV, str(tmp_path / "locks"))
    held = lock.acquire(str(tmp_path / "run"))
    shutil.rmtree(tmp_path / "locks")
    held.release()
    assert held._file is None


@pytest.fixture(scope="module")
def lock_dir_of_a_module_fixture() -> str | None:
    return os.environ.get("BUBBLEUP_LOCK_DIR")


def test_module_scoped_fixtures_take_a_lock_of_the_sessions_own(
    lock_dir_of_a_module_fixture: str | None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A run made in a module-scoped fixture (before any test's own lock directory exists) must not take the
    user-wide lock, or a user's run on this machine fails the suite and the suite refuses the user's run."""
    assert lock_dir_of_a_module_fixture is not None
    assert Path(lock_dir_of_a_module_fixture).is_relative_to(tmp_path_factory.getbasetemp())
