"""A workload that crashes or hangs is data; a killed run resumes to exactly the full set of rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import (
    PY,
    TESTS,
    descendants,
    killing_marked,
    marked,
    run_cli,
    running_cli,
    smoke_dict,
    wait_all_gone,
    wait_until,
    write_scenario,
)

from bubbleup.scenario import scenario_from_dict
from bubbleup.store.records import POINT_COLUMNS, SAMPLE_COLUMNS

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others


def python_workload(function: str, **overrides) -> dict:
    return smoke_dict(**{
        "workload.kind": "python",
        "workload.options": {"function": f"helpers_workload:{function}", "path": str(TESTS)},
        "workload.inferences_per_setting": 10,
        "workload.warmup": 0,
        "sweep.values": [0, 1, 2, 3],
        **overrides,
    })  # fmt: skip


def test_worker_that_exits_mid_point_yields_a_failed_point_and_a_complete_run(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, python_workload("die_on_call_30"))
    done = run_cli(["run", str(path), "--out", str(tmp_path / "run"), "-q", "--no-report"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    points = pd.read_csv(tmp_path / "run" / "points.csv")
    assert len(points) == 4  # every point recorded, none lost
    # 10 calls per point: the worker dies in its 3rd point (call 30), a new worker carries on.
    assert list(points["status"]) == ["ok", "ok", "failed", "ok"]
    failed = points[points["status"] == "failed"].iloc[0]
    assert "died" in failed["error"] and "exit status 1" in failed["error"] and failed["n"] == 0
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert samples["worker_pid"].nunique() == 2  # the worker was restarted after the crash
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "complete"


def test_worker_that_hangs_yields_a_timeout_point(tmp_path: Path) -> None:
    data = python_workload("hang_on_call_30", **{"limits": {"step_timeout_s": 2.0}, "sweep.values": [0, 1, 2]})
    path = write_scenario(tmp_path, data)
    done = run_cli(["run", str(path), "--out", str(tmp_path / "run"), "-q", "--no-report"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    points = pd.read_csv(tmp_path / "run" / "points.csv")
    assert list(points["status"]) == ["ok", "ok", "timeout"]
    assert "no answer within 2 s" in points["error"].iloc[2]


def _command_run(argv: list[str], inferences: int, **overrides: Any) -> dict[str, Any]:
    """The quick scenario with a ``command`` workload running ``argv``: one point, no bubble, no warmup."""
    data = smoke_dict(**{"sweep.values": [0], "workload.warmup": 0, "workload.inferences_per_setting": inferences,
                         **overrides})  # fmt: skip
    data["workload"].pop("settings")
    data["workload"]["kind"] = "command"
    data["workload"]["options"] = {"argv": argv}
    return data


def test_a_command_workload_that_hangs_leaves_none_of_its_processes(tmp_path: Path) -> None:
    """A step timeout kills the worker; its program died with it (PDEATHSIG), but the program's own children
    used to be left to init. The worker's whole tree goes now."""
    marker = f"{1000 + tmp_path.stat().st_ino % 500}.913"  # a sleep length no one else uses
    data = _command_run(["sh", "-c", f"sleep {marker} & sleep 60"], 1, **{"limits.step_timeout_s": 2.0})
    with killing_marked(marker):
        done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "run"), "-q",
                        "--no-report"], cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert list(pd.read_csv(tmp_path / "run" / "points.csv")["status"]) == ["timeout"]
        assert wait_until(lambda: not marked(marker), 10, "the program's background child to go")
        # a program that ends at once and leaves its child running, every inference: none left after the run;
        # the child keeps the program's stderr open, and an inference used to last until the child ended (here
        # past the 2 s step timeout)
        data = _command_run(["sh", "-c", f"sleep {marker} &"], 3, **{"limits.step_timeout_s": 2.0})
        done = run_cli(["run", str(write_scenario(tmp_path, data, "ends.yaml")), "--out", str(tmp_path / "ends"),
                        "-q", "--no-report"], cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert list(pd.read_csv(tmp_path / "ends" / "points.csv")["status"]) == ["ok"]
        assert wait_until(lambda: not marked(marker), 10, "what the program left behind to go")


def test_a_command_workloads_leftovers_go_when_the_orchestrator_is_killed_mid_step(tmp_path: Path) -> None:
    """SIGKILL of the orchestrator while a program that backgrounds a child runs inference after inference: the
    worker (told by SIGTERM now, not SIGKILL) stops everything its programs left before it goes."""
    import signal

    marker = f"{1000 + tmp_path.stat().st_ino % 500}.917"  # a sleep length no one else uses
    data = _command_run(["sh", "-c", f"sleep {marker} & sleep 0.02"], 100000)
    with killing_marked(marker), running_cli(["run", str(write_scenario(tmp_path, data)), "--out",
                                              str(tmp_path / "run"), "-q", "--no-report"], tmp_path) as (proc, pids):
        wait_until(lambda: len(marked(marker)) >= 3, 60, "the program to leave children behind")
        pids.extend(p.pid for p in descendants(proc.pid))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert wait_until(lambda: not marked(marker), 10, "what the program left behind to go")


def test_workload_that_cannot_load_fails_the_run_with_status_1(tmp_path: Path) -> None:
    data = python_workload("spin")
    data["workload"]["options"]["function"] = "no_such_module_anywhere:f"
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "r"), "-q"], cwd=tmp_path)
    assert done.returncode == 1
    assert "could not load" in done.stderr and "no_such_module_anywhere" in done.stderr
    assert "Traceback" not in done.stderr


def test_chatty_workload_cannot_corrupt_the_protocol(tmp_path: Path) -> None:
    data = python_workload("print_a_lot", **{"sweep.values": [0]})
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "r"), "-q", "--no-report"],
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list(pd.read_csv(tmp_path / "r" / "points.csv")["status"]) == ["ok"]
    assert '"bogus": true' in (tmp_path / "r" / "worker.log").read_text()


def test_run_killed_after_two_points_resumes_to_exactly_the_full_set_of_rows(tmp_path: Path) -> None:
    data = smoke_dict(**{"sweep.values": [0, 1, 2, 3], "sweep.repeats": 2, "sweep.settle_s": 0.3})
    path = write_scenario(tmp_path, data)
    out = tmp_path / "run"
    with running_cli(["run", str(path), "--out", str(out), "-q", "--no-report"], cwd=tmp_path) as (proc, kids):

        def two_points_done() -> bool:
            kids[:] = [k.pid for k in descendants(proc.pid)] or kids  # the latest point's worker and bubbles
            try:
                return len(pd.read_csv(out / "points.csv")) >= 2 * 2
            except (FileNotFoundError, pd.errors.EmptyDataError):
                return False

        wait_until(two_points_done, 60, "two points (both settings each) in points.csv", interval_s=0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_all_gone(kids, 3.0)
    partial = pd.read_csv(out / "points.csv")
    assert 4 <= len(partial) < 16  # killed part-way

    done = run_cli(["run", "--resume", str(out), "-q", "--no-report"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    points = pd.read_csv(out / "points.csv")
    samples = pd.read_csv(out / "samples.csv")
    assert list(points.columns) == list(POINT_COLUMNS) and list(samples.columns) == list(SAMPLE_COLUMNS)
    # 2 repeats x 4 values x 2 settings, each exactly once; 12 inferences (2 warm-up + 10) per step.
    assert len(points) == 16
    assert not points.duplicated(["repeat", "value", "step"]).any()
    assert set(zip(points["repeat"], points["value"], strict=True)) == {(r, v) for r in (0, 1) for v in (0, 1, 2, 3)}
    assert len(samples) == 16 * 12
    assert not samples.duplicated(["repeat", "value", "step", "phase", "iteration"]).any()
    partial_keys = set(zip(partial["repeat"], partial["value"], partial["step"], strict=True))
    merged = points.merge(partial, on=["repeat", "value", "step"], suffixes=("", "_before"))
    assert len(merged) == len(partial_keys)
    assert (merged["median_ms"] == merged["median_ms_before"]).all()  # completed points kept as they were
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["resumed_at"]) == 1

    # Resuming a complete run leaves it exactly as it is: no new start check that could change its verdict.
    files = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    again = run_cli(["run", "--resume", str(out), "-q", "--no-report"], cwd=tmp_path)
    assert again.returncode == 0 and "the run is complete; nothing to resume" in again.stderr, again.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == files


def test_an_out_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, smoke_dict())
    (tmp_path / "taken").write_text("a file, not a directory")
    done = run_cli(["run", str(path), "--out", str(tmp_path / "taken"), "-q"], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("taken: exists and is not a directory; --out names the run "
                                                         "directory to create")  # fmt: skip


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 160 KiB tmpfs: room for the manifest and a few points, not for the whole run."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {done.stderr.decode().strip()}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_ends_the_run_with_one_line_and_keeps_completed_points(tmp_path: Path, tiny_disk: Path) -> None:
    data = smoke_dict(**{"sweep.values": [0, 1], "sweep.repeats": 6, "workload.inferences_per_setting": 300,
                         "bubble": {"kind": "memory", "size_mb": 16}})  # fmt: skip
    out = tiny_disk / "run"
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(out), "-q", "--no-report"], cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "write failed" in ln]
    assert len(lines) == 1 and "No space left on device" in lines[0] and str(out) in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and "No space left on device" in manifest["stop_reason"]
    points = pd.read_csv(out / "points.csv")
    samples = pd.read_csv(out / "samples.csv")
    done_points = set(zip(points["repeat"], points["value"], strict=True))
    assert 1 <= len(done_points) < 12 and (points["status"] == "ok").all()
    assert len(points) == 2 * len(done_points)  # both settings of every completed point, nothing partial
    assert set(zip(samples["repeat"], samples["value"], strict=True)) == done_points
    assert len(samples) == len(points) * (300 + 2)  # every sample of every completed point, warm-ups included


def test_a_stop_signal_waits_for_a_held_block_then_stops_the_run() -> None:
    """A point's bubbles being stopped and its rows being committed are held blocks: a Ctrl-C in the middle used
    to leave bubbles unreaped and lose a point whose every step had been measured."""
    from bubbleup.sweep.signals import Interrupted, _held, held, signals_raise

    done = []
    with signals_raise(), pytest.raises(Interrupted):
        with held():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("the block ran to its end")  # Python runs the handler before this line, and it held it
        done.append("not reached")
    assert done == ["the block ran to its end"]
    with signals_raise(), pytest.raises(RuntimeError, match="its own error"):
        try:
            raise RuntimeError("its own error")
        except RuntimeError:
            with held(then_raise=False):  # cleanup on the way out: the error being handled goes on
                os.kill(os.getpid(), signal.SIGINT)
            raise
    assert _held == {"depth": 0, "signum": 0}  # nothing left pending for the next run in this process


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to take one away")
def test_a_run_is_resumed_only_where_its_points_mean_the_same(tmp_path: Path) -> None:
    """A resume re-reads the scenario on the machine it runs on; where that gives other CPUs (a Ray host of
    another size, a taskset), the new points would join the old ones under other conditions. It is refused in
    one line, and the run stays interrupted and resumable where it began."""
    out = tmp_path / "run"
    path = write_scenario(tmp_path, smoke_dict(**{"cpus": {"placement": "spread"}}))
    assert run_cli(["run", str(path), "--out", str(out), "-q", "--no-report"], cwd=tmp_path).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    points = pd.read_csv(out / "points.csv")
    points[points["value"] == 0].to_csv(out / "points.csv", index=False)  # the last point to measure again

    one_cpu = subprocess.run(["taskset", "-c", "0", PY, "-m", "bubbleup", "run", "--resume", str(out), "-q",
                              "--no-report"], cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = one_cpu.stderr.strip().splitlines()
    assert one_cpu.returncode == 2 and len(lines) == 1, one_cpu.stderr
    assert lines[0].startswith(f"error: {out}: cannot resume on this machine: cpus.bubble_cpus: "), lines[0]
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"

    again = run_cli(["run", "--resume", str(out), "-q", "--no-report"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_a_resume_with_nothing_left_to_measure_adds_no_start_check(tmp_path: Path) -> None:
    """A run killed after its last point landed, before it was marked complete: its resume measures nothing,
    so it loads no workload and takes no start check (whose busy machine would make a valid run INVALID)."""
    out = tmp_path / "run"
    path = write_scenario(tmp_path, smoke_dict())
    assert run_cli(["run", str(path), "--out", str(out), "-q", "--no-report"], cwd=tmp_path).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    log = (out / "worker.log").read_bytes()
    done = run_cli(["run", "--resume", str(out), "-q", "--no-report"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    after = json.loads((out / "manifest.json").read_text())
    assert after["status"] == "complete" and after["machine_checks"] == manifest["machine_checks"]
    assert (out / "worker.log").read_bytes() == log  # no worker started


def test_a_process_the_machine_refuses_to_start_fails_its_point_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fork can fail (ENOMEM, EAGAIN) in a harness that fills memory on purpose. A bubble or a worker that cannot
    be started fails that point or step, in words, and the run measures the rest, instead of ending in a
    traceback. The failure is injected at the one call that starts every child; all else runs for real."""
    import errno

    import bubbleup
    from bubbleup import procs
    from bubbleup.pressure import pool

    real = procs.spawn_child
    calls = {"bubble": 0}

    def refusing(module: str, *args: Any, **kw: Any) -> Any:
        if module != "bubbleup.sweep.worker":
            calls["bubble"] += 1
            if calls["bubble"] == 2:  # ascending: the first bubble of count 2
                raise OSError(errno.ENOMEM, "Cannot allocate memory")
        return real(module, *args, **kw)

    monkeypatch.setattr(pool.procs, "spawn_child", refusing)
    data = smoke_dict(**{"sweep.values": [0, 1, 2]})
    data["sweep"]["order"] = "ascending"
    run = bubbleup.run(scenario_from_dict(data, "test"), tmp_path / "run", report=False)
    points = run.points
    failed = points[points["status"] == "failed"]
    assert set(failed["value"]) == {2} and failed["error"].str.contains("could not be started: .*memory").all()
    assert set(points.loc[points["status"] == "ok", "value"]) == {0, 1}
    assert run.manifest.status == "complete"


def test_a_run_under_nohup_outlives_the_terminal(tmp_path: Path) -> None:
    """``nohup bubbleup run ...`` ignores SIGHUP; the run must keep that, not install its own stop on it."""
    out = tmp_path / "run"
    path = write_scenario(tmp_path, smoke_dict(**{"sweep.values": [0, 1, 2], "sweep.settle_s": 0.2}))
    with running_cli(["run", str(path), "--out", str(out), "-q", "--no-report"], tmp_path, ["nohup"]) as (proc, _):
        wait_until(lambda: (out / "points.csv").is_file() and len(pd.read_csv(out / "points.csv")) >= 2, 60,
                   "the first point", interval_s=0.02)  # fmt: skip
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_a_run_started_from_a_thread_runs(tmp_path: Path) -> None:
    """Python installs signal handlers only in the main thread; a run started through the API from another
    thread (a service, a notebook's executor) runs with the process's own handlers."""
    import threading

    import bubbleup

    got: dict[str, Any] = {}

    def work() -> None:
        try:
            got["run"] = bubbleup.run(scenario_from_dict(smoke_dict(), "test"), tmp_path / "run", report=False)
        except BaseException as exc:  # handed to the test's thread
            got["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and "error" not in got, got.get("error")
    assert got["run"].manifest.status == "complete"
