"""The cliff predicted from CPU demand: the worker's measured CPU use plus the bubbles' duties, against the cores."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import TESTS, run_cli, smoke_dict, write_scenario
from fixtures_runs import make_run

from bubbleup.analysis.demand import predict
from bubbleup.analysis.summary import find_cliffs
from bubbleup.store.reader import load_run


def _with_demand(run_dir: Path, workload_cores: float, duty: float, cores: float) -> Path:
    points = pd.read_csv(run_dir / "points.csv")
    points["cpu_cores"] = workload_cores
    points.to_csv(run_dir / "points.csv", index=False)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["cpu_demand"] = {"cores": cores, "duty_per_set": duty, "demand_unknown": False}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


@pytest.mark.parametrize(("workload", "duty", "cores", "expected"), [
    (1.0, 0.25, 2, 5),  # the fig 3.3 arithmetic: 1 + 4 x 0.25 = 2 fits, the fifth does not
    (1.3, 1.0, 2, 1),
    (0.9, 0.25, 2, 5),
    (1.05, 0.25, 2, 4),
    (0.2, 0.1, 2, None),  # never exceeds the cores within 0..7
])  # fmt: skip
def test_prediction_is_the_first_count_whose_demand_exceeds_the_cores(
    tmp_path: Path, workload: float, duty: float, cores: float, expected: float | None
) -> None:
    values = list(range(8))
    run_dir = _with_demand(make_run(tmp_path, {"HH": [10] * 8}, values), workload, duty, cores)
    (p,) = predict(load_run(run_dir))
    assert p.predicted_at == expected and p.workload_cores == pytest.approx(workload)


def test_the_sentence_sets_the_measured_cliff_beside_the_predicted_one(tmp_path: Path) -> None:
    values = list(range(8))
    curve = [10, 10.2, 10.5, 10.8, 11, 20, 26, 33]  # flat start, jump at the fifth bubble
    run_dir = _with_demand(make_run(tmp_path, {"HH": curve}, values, repeats=2), 1.0, 0.25, 2)
    run = load_run(run_dir)
    (p,), (c,) = predict(run), find_cliffs(run)
    assert c.at == 5 and p.predicted_at == 5
    text = p.sentence(c, [float(v) for v in values])
    assert text.startswith("HH: CPU demand predicts the cliff at 5") and "measured: at 5; within one step" in text


def test_a_set_of_kinds_is_worded_as_a_set(tmp_path: Path) -> None:
    """``bubbles: [memory, cpu]`` swept by count: a unit of demand is one set (its duties summed), and says so."""
    kinds = [{"kind": "memory", "size_mb": 32, "cpu_duty": 0.0, "pattern": "none"},
             {"kind": "cpu", "size_mb": 0, "cpu_duty": 0.5, "pattern": "none"}]  # fmt: skip
    run_dir = _with_demand(make_run(tmp_path, {"HH": [10] * 4}, [0, 1, 2, 3], bubbles=kinds), 1.0, 0.5, 2)
    (p,) = predict(load_run(run_dir))
    assert p.predicted_at == 3 and "each bubble set asks for 0.50" in p.why(), p.why()


def test_a_size_sweep_gets_no_prediction(tmp_path: Path) -> None:
    run_dir = _with_demand(make_run(tmp_path, {"HH": [10, 11]}, [64, 128], axis="size_mb"), 1.0, 0.25, 2)
    assert predict(load_run(run_dir)) == []


def test_the_worker_measures_its_own_cpu_use(tmp_path: Path) -> None:
    """A busy-looping workload uses about a core, a sleeping one almost none: cpu_cores tells them apart."""
    used = {}
    for function in ("spin", "nap"):
        data = smoke_dict(**{"sweep.values": [0], "telemetry.enabled": False})
        data["workload"] = {"kind": "python", "inferences_per_setting": 40, "warmup": 1,
                            "options": {"function": f"helpers_workload:{function}", "path": str(TESTS)}}  # fmt: skip
        out = tmp_path / function
        done = run_cli(["run", str(write_scenario(tmp_path, data, f"{function}.yaml")), "--out", str(out), "-q",
                        "--no-report"], cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        used[function] = float(pd.read_csv(out / "points.csv")["cpu_cores"].iloc[0])
    assert used["spin"] <= 1.1  # one thread cannot use more than one core
    assert used["spin"] > 5 * used["nap"], used
    manifest = json.loads((tmp_path / "spin" / "manifest.json").read_text())
    assert manifest["cpu_demand"]["duty_per_set"] == 0.5 and manifest["cpu_demand"]["cores"] >= 1


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_the_report_and_the_command_line_state_both_cliffs(tmp_path: Path) -> None:
    from bubbleup.report import html

    values = list(range(8))
    curve = [10, 10.2, 10.5, 10.8, 11, 20, 26, 33]
    run_dir = _with_demand(make_run(tmp_path, {"HH": curve}, values, repeats=2), 1.0, 0.25, 2)
    written = html.write(run_dir)
    expected = "HH: CPU demand predicts the cliff at 5"
    assert expected in written.path.read_text()
    # the command line: the table's row says both, the arithmetic follows it
    (row,) = [line for line in written.verdicts if line.startswith("HH ")]
    assert row.split()[1:4] == ["cliff", "at", "5"] and row.endswith("at 5 (within one step)")
    assert any(line.startswith("CPU demand: the workload alone uses ") for line in written.verdicts)


def test_a_command_co_runner_or_a_rate_held_bubble_gets_no_prediction() -> None:
    """Their CPU use is the program's, or the rate's: a duty of 0 would predict no cliff and call any measured
    one 'NOT within one step'."""
    from bubbleup.scenario import scenario_from_dict
    from bubbleup.sweep.facts import cpu_demand

    def facts(bubble: dict) -> dict:
        return cpu_demand(scenario_from_dict(smoke_dict(bubble=bubble), "test.yaml"), 2)

    assert facts({"kind": "command", "command": ["yes"]})["demand_unknown"]
    assert facts({"kind": "bandwidth", "size_mb": 8, "rate_mb_s": 100})["demand_unknown"]
    assert not facts({"kind": "cpu", "cpu_duty": 0.5})["demand_unknown"]


def test_the_workloads_use_is_said_beside_the_pressure_it_was_measured_at() -> None:
    from bubbleup.analysis.demand import DemandPrediction

    alone = DemandPrediction("HH", 1.0, 0.3, 2.0, 0.0, 4.0, 6.0)
    beside = DemandPrediction("HH", 1.0, 0.3, 2.0, 1.0, 4.0, 6.0)  # the 0-bubble point failed or was not swept
    assert "the workload alone uses 1.00 cores" in alone.why()
    assert "the workload beside 1 bubble uses 1.00 cores" in beside.why() and "alone" not in beside.why()
