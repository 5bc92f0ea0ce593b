"""The CPU dimension of a prediction (issue 11, item 6): a workload's QoS against CPU-only load on its own
CPUs, read at a co-runner's measured cores and multiplied with the memory curve's QoS at its score."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from conftest import run_cli, smoke_dict
from fixtures_runs import make_run

from bubbleup import api
from bubbleup.analysis import cpu_curve, prediction
from bubbleup.analysis.prediction import INSIDE
from bubbleup.colocation import workflow
from bubbleup.errors import UserError
from bubbleup.scenario import scenario_from_dict
from bubbleup.store.reader import load_run

SIZES = [0, 1, 2, 4, 8, 16, 32, 64, 128]
MEMORY_LAT = [10, 10, 10.5, 11, 12, 14, 17, 19, 20]  # QoS 1 .. 0.5 against the Bubble-Up bubble
CPU_LAT = [10, 10, 12.5, 16, 20]  # QoS 1, 1, 0.8, 0.625, 0.5 at 0, 0.5, 1, 1.5, 2 cores


def _sensitivity(root: Path) -> Path:
    return make_run(root, {"HH": MEMORY_LAT}, SIZES, axis="size_mb", repeats=3, noise=0.01, name="sens",
                    bubbles=[{"kind": "bubble-up"}])  # fmt: skip


def _cpu_run(root: Path, kind: str = "cpu", lat: list[float] = CPU_LAT) -> Path:
    return make_run(root, {"HH": lat}, [0, 1, 2, 3, 4], repeats=3, noise=0.01, name=f"cpu-{kind}",
                    bubbles=[{"kind": kind, "cpu_duty": 0.5}],
                    cpu_demand={"cores": 2.0, "duty_per_set": 0.5})  # fmt: skip


def test_a_cpu_curve_is_qos_against_count_times_duty_and_interpolates(tmp_path: Path) -> None:
    (c,) = cpu_curve.curves(load_run(_cpu_run(tmp_path)))
    assert c.setting == "HH" and c.cores == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert c.qos[0] == pytest.approx(1.0) and c.qos[-1] == pytest.approx(0.5, abs=0.02)
    qos, low, high, beyond = c.at(1.25)  # halfway between 0.8 at 1 core and 0.625 at 1.5
    assert qos == pytest.approx(0.7125, abs=0.02) and low <= qos <= high and not beyond
    assert c.at(3.0)[3] and c.at(3.0)[0] == pytest.approx(c.qos[-1], abs=0.02)  # clamped, and said


def test_prediction_on_shared_cpus_multiplies_the_two_curves(tmp_path: Path) -> None:
    memory = workflow.workload_curves(_sensitivity(tmp_path))[1]
    cpu = {c.setting: c for c in cpu_curve.curves(load_run(_cpu_run(tmp_path)))}
    s = prediction.Score(24.0, 24.0, 24.0, INSIDE, 0.7, 0.69, 0.71, corunner_cores=1.0)
    (alone,) = prediction.predict(memory, s)
    (shared,) = prediction.predict(memory, s, cpu=cpu)
    assert math.isnan(alone.cpu_qos) and alone.qos == pytest.approx(10 / 15.5, abs=0.02)  # between 16 and 32 MiB
    assert shared.memory_qos == pytest.approx(alone.qos) and shared.cpu_qos == pytest.approx(0.8, abs=0.02)
    assert shared.qos == pytest.approx(alone.qos * shared.cpu_qos)
    assert shared.qos_low <= shared.qos <= shared.qos_high
    assert "x CPU 0.8" in shared.sentence() and "1.00 cores" in shared.sentence()
    assert not shared.outside and "outside" not in shared.sentence()
    many = dataclasses.replace(s, corunner_cores=9.0)  # more cores than the CPU curve measured; the score inside
    (far,) = prediction.predict(memory, many, cpu=cpu)
    assert far.outside and "9.00 cores lie outside the CPU curve's measured cores" in far.sentence()
    assert "MiB lies outside" not in far.sentence()
    with pytest.raises(ValueError, match="measured CPU use"):  # a hand score without cores
        prediction.predict(memory, workflow.manual_score(24.0), cpu=cpu)


def test_where_the_kernel_groups_by_session_a_co_runner_weighs_one_task_at_most(tmp_path: Path) -> None:
    """With sched_autogroup, a co-runner (one session of its own) keeping 1.92 cores busy alone competes as one
    task: on 2 CPUs with the workload pinned, stress-ng --cpu 3 left ApproxNet at QoS 0.99-1.02 where the curve
    at 1.92 cores read 0.75. Without session grouping its threads compete one by one: the cores themselves."""
    memory = workflow.workload_curves(_sensitivity(tmp_path))[1]
    run_dir = _cpu_run(tmp_path)
    s = prediction.Score(24.0, 24.0, 24.0, INSIDE, 0.7, 0.69, 0.71, corunner_cores=1.92)
    (per_thread,) = prediction.predict(memory, s, cpu={c.setting: c for c in cpu_curve.curves(load_run(run_dir))})
    assert per_thread.cpu_load == pytest.approx(1.92) and per_thread.cpu_qos == pytest.approx(0.52, abs=0.03)
    manifest = run_dir / "manifest.json"
    data = json.loads(manifest.read_text())
    data["environment"]["sched_autogroup"] = "1"  # as bubbleup.machine.environment records it
    manifest.write_text(json.dumps(data))
    cpu = {c.setting: c for c in cpu_curve.curves(load_run(run_dir))}
    assert cpu["HH"].per_session
    (grouped,) = prediction.predict(memory, s, cpu=cpu)
    assert grouped.cpu_load == 1.0 and grouped.cpu_qos == pytest.approx(0.8, abs=0.02)  # the curve at one core
    assert "x CPU 0.8" in grouped.sentence() and "at 1.00 cores, 1.92 cores in one session" in grouped.sentence()
    light = dataclasses.replace(s, corunner_cores=0.5)  # below one core: its own cores, grouped or not
    assert prediction.predict(memory, light, cpu=cpu)[0].cpu_load == 0.5
    # A mix of programs is a session each, and sessions add up: 1.92 + 0.5 cores load the CPUs as 1.5 tasks
    mix = dataclasses.replace(s, corunner_cores=2.42, corunner_sessions=(1.92, 0.5))
    (both,) = prediction.predict(memory, mix, cpu=cpu)
    assert both.cpu_load == pytest.approx(1.5) and both.cpu_qos == pytest.approx(0.625, abs=0.03)
    assert "at 1.50 cores, 2.42 cores in 2 sessions" in both.sentence()


def test_a_cpu_run_must_be_cpu_only_bubbles_of_the_same_workload(tmp_path: Path) -> None:
    sens = load_run(_sensitivity(tmp_path))
    with pytest.raises(UserError, match="count sweep of CPU-only bubbles"):
        workflow.cpu_curves(_cpu_run(tmp_path, kind="combined"), sens)
    other = _cpu_run(tmp_path / "other")
    manifest = other / "manifest.json"
    data = json.loads(manifest.read_text())
    data["scenario_given"]["workload"]["options"] = {"rounds": 9}  # another program than the sensitivity run's
    manifest.write_text(json.dumps(data))
    with pytest.raises(UserError, match="its workload is not the one of"):
        workflow.cpu_curves(other, sens)


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_predict_on_shared_cpus_from_the_command_line(tmp_path: Path) -> None:
    sens, cpu = _sensitivity(tmp_path), _cpu_run(tmp_path)
    done = run_cli(["predict", str(sens), "--score", "24", "--cores", "1", "--cpu-run", str(cpu)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "x CPU 0.8" in done.stdout
    for args, says in [(["--score", "24", "--cpu-run", str(cpu)], "--cores C"),
                       (["--score", "24", "--cores", "-1"], "argument --cores: must be a finite number, 0 or more"),
                       (["--cores", "1", "--with", "--", "true"], "--cores is the co-runner's CPU use"),
                       (["--score", "24", "--cores", "1", "--cpu-run", str(sens)], "CPU-only bubbles")]:  # fmt: skip
        bad = run_cli(["predict", str(sens), *args], cwd=tmp_path)
        assert bad.returncode == 2 and says in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


@pytest.mark.slow
def test_a_measured_cpu_curve_falls_once_the_load_exceeds_the_spare_cores(tmp_path: Path) -> None:
    """For real: a one-thread workload pinned to one CPU of two (its sensitivity run's placement) beside 0-4
    full-core CPU-only bubbles the scheduler places anywhere. At 4 (4 cores beside a workload that needs 1, on
    2 CPUs) it must lose CPU time; at 1 the bubble has the other CPU to itself, and the workload keeps more of
    its speed; the derived scenario kept the workload, its CPUs and the sweep it promised.
    An inference takes about 5 ms: far shorter ones (tens of microseconds) mostly run between the bubbles'
    time slices, and their median does not see time-sharing at all."""
    sens = api.run(scenario_from_dict(smoke_dict(**{
        "name": "sens", "workload.options": {"working_sets_kb": [256], "rounds": 800},
        "workload.inferences_per_setting": 40, "bubble": {"kind": "bubble-up"}, "cpus": {"placement": "apart"},
        "sweep": {"axis": "size_mb", "values": [0, 4], "repeats": 1, "settle_s": 0.0}}), "sens"),
        tmp_path / "sens", reports_root=tmp_path, progress=False)  # fmt: skip
    out = workflow.measure_cpu_curves(sens.path, tmp_path / "cpu", repeats=2)
    run = load_run(out)
    assert run.manifest.cpu_placement is not None
    assert run.manifest.cpu_placement["workload_cpus"] == sens.manifest.cpu_placement["workload_cpus"]  # type: ignore[index]
    assert run.manifest.scenario_given["workload"] == sens.manifest.scenario_given["workload"]
    _, found = workflow.cpu_curves(out, sens)
    (c,) = found.values()
    assert c.cores == (0.0, 1.0, 2.0, 3.0, 4.0)
    assert c.monotone()[-1] < 0.9 and c.qos[1] > c.monotone()[-1], c.qos
