"""The workload protocol, registry and the built-in non-TensorFlow workloads."""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TESTS, run_cli, smoke_dict, write_scenario

import workloads
from bubbleup.sweep.worker import Runner, load_workload
from workloads.python_call import PythonCallWorkload


def test_first_use_is_marked_exactly_once_per_setting_per_process() -> None:
    runner = Runner(load_workload("synthetic", {"working_sets_kb": [64, 256]}))
    runner.workload.load()
    results = [runner.step(s, 2, 5) for s in ("ws64k", "ws256k", "ws64k", "ws256k", "ws64k")]
    first_uses = {s: 0 for s in ("ws64k", "ws256k")}
    for res in results:
        first_uses[res.setting] += sum(r.first_use for r in res.records)
    assert first_uses == {"ws64k": 1, "ws256k": 1}
    # ... and it is the very first inference of the setting's first step, a warm-up one.
    r0 = results[0].records[0]
    assert [r0.phase, r0.iteration, r0.first_use] == ["warmup", 0, 1] and results[1].records[0].first_use == 1


def test_runner_records_every_inference_with_latency_and_rss() -> None:
    runner = Runner(load_workload("synthetic", {}))
    runner.workload.load()
    res = runner.step("ws2048k", warmup=3, n=20)
    assert [r.phase for r in res.records] == ["warmup"] * 3 + ["timed"] * 20
    assert [r.iteration for r in res.records[3:]] == list(range(20))
    assert all(r.latency_ms > 0 for r in res.records)
    assert all(r.rss_mb > 20 for r in res.records)  # RSS in MiB of a process that has numpy loaded
    assert res.select_ms > 0


def test_synthetic_settings_differ_in_cost() -> None:
    runner = Runner(load_workload("synthetic", {"working_sets_kb": [64, 16384], "rounds": 4}))
    runner.workload.load()
    small = sorted(runner.step("ws64k", 2, 15).latencies())[7]
    large = sorted(runner.step("ws16384k", 2, 15).latencies())[7]
    assert large > 5 * small


def test_python_workload_calls_setup_per_setting(tmp_path: Path) -> None:
    w = PythonCallWorkload(PythonCallWorkload.Options(
        function="helpers_workload:work", setup="helpers_workload:setup_scale", settings=("small", "large"),
        path=str(TESTS)))  # fmt: skip
    runner = Runner(w)
    w.load()
    small = sorted(runner.step("small", 1, 21).latencies())[10]
    large = sorted(runner.step("large", 1, 21).latencies())[10]
    assert large > 5 * small  # 4000 vs 200 iterations


def test_command_workload_times_each_run_of_a_program(tmp_path: Path) -> None:
    w = load_workload("command", {"argv": ["sleep", "{setting}"], "settings": ["0.01", "0.05"]})
    runner = Runner(w)
    w.load()
    fast_runs: list[float] = []
    slow_runs: list[float] = []
    for _ in range(9):  # interleaved pairs, so a change of CPU speed or load falls on both settings alike
        fast_runs += runner.step("0.01", 0, 1).latencies()
        slow_runs += runner.step("0.05", 0, 1).latencies()
    asked = 50 - 10  # ms of extra sleep the second setting asks for
    # Process start-up (tens of ms on a loaded VM, jittering by +-20) is in both timings of a pair and
    # cancels in their difference; the median of the pairs' differences is robust to a slow start.
    diff = statistics.median(s - f for s, f in zip(slow_runs, fast_runs, strict=True))
    startup = statistics.median(fast_runs) - 10  # what one run costs beyond its sleep, measured here
    evidence = {"fast": fast_runs, "slow": slow_runs, "median_diff": diff}
    # Each timing holds the whole run of the program: a sleep cannot be cut short, on any machine ...
    assert min(fast_runs) >= 10 and min(slow_runs) >= 50, evidence
    # ... and the setting reaches the program: the difference is the extra sleep,
    assert diff >= 0.75 * asked, evidence
    # not a multiple of it or of a run's measured start-up (a setting run twice, timings that accumulate).
    assert diff <= 2 * (asked + startup), evidence
    # Loaded in-process (here, not in a worker), it takes nothing of the process: SIGTERM stays deliverable
    # (blocked, every child started from here after it inherited that, and an orchestrator among them waited
    # out each bubble's grace period), and no other child of this process is its to stop.
    import signal

    from workloads import lifetime

    w.close()
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert not lifetime.owns_process_tree()


def test_command_workload_failure_is_an_error() -> None:
    w = load_workload("command", {"argv": ["false"]})
    w.load()
    with pytest.raises(RuntimeError, match="exited with status 1"):
        Runner(w).step("default", 0, 1)


def test_third_party_workload_registers_through_an_entry_point(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "site"
    (pkg / "thirdparty_bench").mkdir(parents=True)
    (pkg / "thirdparty_bench" / "__init__.py").write_text(
        textwrap.dedent("""
        from workloads.base import Workload
        class Echo(Workload):
            kind = "echo"
            summary = "test workload from an entry point"
            def settings(self):
                return ["loud", "quiet"]
            def infer(self, sample):
                return {"said": "hi"}
    """)
    )
    dist = pkg / "thirdparty_bench-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-bench\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bubbleup.workloads]\necho = thirdparty_bench:Echo\n")
    monkeypatch.syspath_prepend(str(pkg))
    assert workloads.available_kinds()["echo"] == "thirdparty_bench:Echo"
    w = load_workload("echo", {})
    res = Runner(w).step("quiet", 0, 2)
    assert res.records[0].info == '{"said":"hi"}'
    sys.modules.pop("thirdparty_bench", None)


@pytest.mark.beside_others  # processes and files only: nothing timed, no validity verdict
def test_list_shows_kinds_settings_and_presets(tmp_path: Path) -> None:
    done = run_cli(["list"], cwd=tmp_path, timeout=120)
    assert done.returncode == 0
    assert "synthetic:" in done.stdout and "ws256k" in done.stdout and "presets: small=ws256k" in done.stdout
    assert "python:" in done.stdout and "command:" in done.stdout
    # each kind's options with their defaults, as a scenario writes them
    assert "options (workload.options, defaults): working_sets_kb=[256, 2048, 16384], rounds=8" in done.stdout
    assert "argv=[true], settings=[default], check=true" in done.stdout
    assert "function=workloads.python_call:noop, setup=none" in done.stdout


def test_smoke_scenario_runs_and_reads_back(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    # The timeout only guards against a hang (the run takes ~10 s here); how fast it runs is the machine's business.
    done = run_cli(["run", str(root / "scenarios" / "smoke.yaml"), "--out", str(tmp_path / "run"), "-q",
                    "--no-report"], cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    points = pd.read_csv(tmp_path / "run" / "points.csv")
    shipped = yaml.safe_load((root / "scenarios" / "smoke.yaml").read_text())
    n_points = len(shipped["sweep"]["values"]) * len(shipped["workload"]["options"]["working_sets_kb"])
    n_points *= shipped["sweep"]["repeats"]
    assert (points["status"] == "ok").all() and len(points) == n_points
    assert len(samples) == n_points * (shipped["workload"]["inferences_per_setting"] + shipped["workload"]["warmup"])
    assert (samples["latency_ms"] > 0).all() and (samples["rss_mb"] > 0).all()
    # The bubbles really held their memory while the workload ran...
    assert points.groupby("value")["bubbles_rss_mb"].first().to_dict() == pytest.approx({0: 0, 1: 64, 2: 128}, rel=0.03)
    # ... and the telemetry sampler saw them (region plus each bubble's ~35 MiB baseline) and the worker.
    telemetry = pd.read_csv(tmp_path / "run" / "telemetry.csv")
    assert set(telemetry["value"]) == {0, 1, 2}
    peak = telemetry.groupby("value")["bubbles_rss_mb"].max()
    assert peak[0] == 0 and 64 < peak[1] < 64 + 60 and 128 < peak[2] < 128 + 120
    assert (telemetry["worker_rss_mb"] > 20).all() and telemetry["t_s"].is_monotonic_increasing


@pytest.mark.beside_others  # processes and files only: nothing timed, no validity verdict
def test_validate_reports_the_plan(tmp_path: Path) -> None:
    file = write_scenario(tmp_path, smoke_dict())
    done = run_cli(["validate", str(file)], cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and "2 points x 2 steps of synthetic" in done.stdout
    # validate, and every refusal of bad input, answers without loading what only a finished run needs (scipy.stats
    # and matplotlib took 1 s and more of each start)
    check = (f"import sys; from bubbleup.cli import main; code = main(['validate', {str(file)!r}]); "
             "print(sorted(m for m in ('scipy.stats', 'matplotlib', 'seaborn') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0 and loaded.stdout.splitlines()[-1] == "[]", (loaded.stdout, loaded.stderr)


@pytest.mark.beside_others  # processes and files only: nothing timed, no validity verdict
def test_several_workloads_are_measured_one_at_a_time_in_fresh_workers(tmp_path: Path) -> None:
    data = smoke_dict(**{"sweep.values": [0, 1]})
    del data["workload"]
    data["workloads"] = [
        {"label": "small ws", "kind": "synthetic", "options": {"working_sets_kb": [64]}, "inferences_per_setting": 5},
        {"label": "calls", "kind": "python", "options": {"function": "helpers_workload:spin", "path": str(TESTS)},
         "steps": [{"setting": "default", "inferences": 4}, {"setting": "default", "inferences": 3, "warmup": 1}]},
    ]  # fmt: skip
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "r"), "-q", "--no-report"],
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    points = pd.read_csv(tmp_path / "r" / "points.csv")
    samples = pd.read_csv(tmp_path / "r" / "samples.csv")
    assert list(points["workload"]) == ["small ws", "calls", "calls"] * 2
    assert list(points["n"]) == [5, 4, 3] * 2
    # One fresh worker per workload and point: four distinct processes, never shared.
    pids = samples.groupby(["value", "workload"])["worker_pid"].nunique()
    assert (pids == 1).all() and samples["worker_pid"].nunique() == 4
    # Each fresh worker marks its first use again.
    assert samples.groupby(["value", "workload"])["first_use"].sum().tolist() == [1, 1, 1, 1]


def test_workload_and_workloads_are_mutually_exclusive(tmp_path: Path, capsys) -> None:
    from bubbleup import cli

    both = smoke_dict()
    both["workloads"] = [both["workload"]]
    twice = smoke_dict()
    twice["workloads"] = [twice.pop("workload"), {"kind": "synthetic"}]
    for data, words in ((both, "workloads: give either"), (twice, "workloads: label 'synthetic' is used twice")):
        assert cli.main(["validate", str(write_scenario(tmp_path, data))]) == 2
        assert words in capsys.readouterr().err


@pytest.mark.beside_others  # processes and files only: nothing timed, no validity verdict
def test_per_repeat_gives_every_repeat_a_fresh_worker_loaded_before_its_bubbles(tmp_path: Path) -> None:
    data = smoke_dict(**{"sweep.values": [0, 1], "sweep.repeats": 3, "workload.restart": "per_repeat"})
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "r"), "-q", "--no-report"],
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    samples = pd.read_csv(tmp_path / "r" / "samples.csv")
    per_repeat = samples.groupby("repeat")["worker_pid"].nunique()
    assert (per_repeat == 1).all() and samples["worker_pid"].nunique() == 3  # one process per repeat, never shared
    # A fresh process: each repeat's worker marks the first use of each setting again, at its first point only.
    first = samples[samples["first_use"] == 1]
    assert len(first) == 3 * 2 and first.groupby("repeat")["value"].nunique().eq(1).all()


@pytest.mark.beside_others  # processes and files only: nothing timed, no validity verdict
def test_a_workers_temporary_files_leave_with_it(tmp_path: Path) -> None:
    """TensorFlow's autograph writes a file into the temporary directory for every traced function and never
    removes it (thousands a day here): each worker gets a private temporary directory, removed with it, and one
    left by a killed run is removed by the next."""
    import os

    tmp, log = tmp_path / "tmp", tmp_path / "leftovers.txt"
    tmp.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp / f"bubbleup-worker-{int(gone.stdout)}-x"  # a killed run's: its orchestrator is gone
    stale.mkdir()
    live = tmp / f"bubbleup-worker-{os.getpid()}-y"  # a running one's: kept
    live.mkdir()
    data = smoke_dict(**{"sweep.values": [0], "telemetry.enabled": False})
    data["workload"] = {"kind": "python", "options": {"function": "helpers_workload:leave_temp_file",
                                                      "path": str(TESTS)}, "inferences_per_setting": 3}  # fmt: skip
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "r"), "-q", "--no-report"],
                   cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp), "LEFTOVER_LOG": str(log)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = [Path(p) for p in log.read_text().split()]
    assert len(written) >= 3  # the workload did leave files (warmup and timed calls)...
    assert all(p.parent.parent == tmp and p.parent.name.startswith("bubbleup-worker-") for p in written)
    assert not any(p.exists() for p in written) and list(tmp.iterdir()) == [live]  # ...and none is left


def test_synthetic_presets_are_the_smallest_and_largest_working_set_in_any_order() -> None:
    from workloads.synthetic import SyntheticOptions, SyntheticWorkload

    w = SyntheticWorkload(SyntheticOptions(working_sets_kb=[16384, 2048, 256]))
    assert w.presets() == {"small": "ws256k", "large": "ws16384k"}
