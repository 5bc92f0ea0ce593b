"""Samples chosen by precision: a step times until its IQM's CI (by batch means) is narrow enough, or a cap, and says
which."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import TESTS, run_cli, smoke_dict, write_scenario

from bubbleup.analysis.stats import batch_halfwidth, iqm


def _run(tmp_path: Path, function: str, precision: dict[str, Any] | None, inferences: int = 20) -> pd.DataFrame:
    data = smoke_dict(**{"sweep.values": [0], "telemetry.enabled": False})
    data["workload"] = {"kind": "python", "options": {"function": f"helpers_workload:{function}", "path": str(TESTS)},
                        "inferences_per_setting": inferences, "warmup": 2}  # fmt: skip
    if precision is not None:
        data["workload"]["precision"] = precision
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(tmp_path / "r"), "-q", "--no-report"],
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return pd.read_csv(tmp_path / "r" / "points.csv")


def test_a_quiet_kernel_stops_early_once_its_iqm_is_precise(tmp_path: Path) -> None:
    points = _run(tmp_path, "spin", {"target": 0.05, "max_inferences": 5000, "max_seconds": 60})
    (row,) = points.itertuples()
    assert row.stopped_by == "precision"
    assert 20 <= row.n < 1000  # far from the cap: it stopped because it was precise, not because it was told to
    assert row.halfwidth <= 0.05 and row.target_halfwidth == 0.05
    # The precision it stopped at is what points.csv reports, and it is the rule's own figure on the samples.
    samples = pd.read_csv(tmp_path / "r" / "samples.csv")
    timed = samples[samples["phase"] == "timed"]
    assert len(timed) == row.n
    again = batch_halfwidth(timed["latency_ms"].to_numpy(), timed["t_s"].to_numpy(), 0.0)  # no bubble: 1 sample each
    assert math.isclose(again, row.halfwidth, rel_tol=0.02)


def test_a_noisy_kernel_hits_the_inference_cap_and_is_flagged(tmp_path: Path) -> None:
    points = _run(tmp_path, "bimodal", {"target": 0.01, "max_inferences": 200, "max_seconds": 60})
    (row,) = points.itertuples()
    assert row.stopped_by == "cap_inferences" and row.n == 200
    assert 0.01 < row.halfwidth < math.inf  # the flag: a cap reached without the precision, over enough batches


def test_the_seconds_cap_ends_a_step_that_never_gets_precise(tmp_path: Path) -> None:
    points = _run(tmp_path, "bimodal", {"target": 0.01, "max_inferences": 1_000_000, "max_seconds": 0.5})
    (row,) = points.itertuples()
    assert row.stopped_by == "cap_seconds" and row.halfwidth > 0.01
    samples = pd.read_csv(tmp_path / "r" / "samples.csv")
    timed = samples[samples["phase"] == "timed"]
    assert len(timed) == row.n and 20 <= row.n < 1_000_000


def test_without_precision_a_step_times_exactly_its_count(tmp_path: Path) -> None:
    points = _run(tmp_path, "bimodal", None, inferences=17)
    (row,) = points.itertuples()
    assert row.stopped_by == "count" and row.n == 17 and math.isnan(row.target_halfwidth)
    assert math.isnan(row.halfwidth)  # no precision was asked for, and none is claimed


def _steps(rng: np.random.Generator, stretch_ms: float, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """A step of ``n`` inferences of 1 or 3 ms (plus 10% noise) whose mode holds for ``stretch_ms`` at a time,
    as under a duty-cycled bubble (0: every inference draws its own mode); with its end times in seconds."""
    lat, ends, t, slow, until = [], [], 0.0, False, 0.0
    for _ in range(n):
        if t >= until:
            slow, until = bool(rng.random() < 0.5), t + (stretch_ms / 1000 if stretch_ms else 0.0)
        x = (3.0 if slow else 1.0) * (1 + 0.1 * rng.standard_normal())
        t += x / 1000
        lat.append(x)
        ends.append(t)
    return np.array(lat), np.array(ends)


def test_batch_means_keep_their_coverage_when_samples_come_in_stretches() -> None:
    """The reason for batches: with the mode held for 50 ms stretches, an interval that treats samples as
    independent covers the true IQM far less often than 95%; batches one stretch long keep about 95%, as the
    per-sample interval does where samples are independent."""
    rng = np.random.default_rng(1)
    truth = float(iqm(_steps(rng, 50, 200_000)[0]))  # a step 400 times as long
    covered_batches = covered_samples = 0
    trials = 200
    for _ in range(trials):
        lat, ends = _steps(rng, 50)
        centre = iqm(lat)
        hw = batch_halfwidth(lat, ends, 0.05) * centre
        covered_batches += abs(centre - truth) <= hw
        covered_samples += abs(centre - truth) <= batch_halfwidth(lat, ends, 0.0) * centre  # a sample per batch
    independent_truth = float(iqm(_steps(rng, 0, 200_000)[0]))
    covered_independent = 0
    for _ in range(trials):
        lat, ends = _steps(rng, 0)
        centre = iqm(lat)
        covered_independent += abs(centre - independent_truth) <= batch_halfwidth(lat, ends, 0.0) * centre
    assert covered_batches / trials >= 0.9 and covered_independent / trials >= 0.9
    assert covered_samples / trials <= 0.6


def test_a_step_spans_ten_duty_periods_of_the_bubbles() -> None:
    """A 0.3-duty bubble with a 50 ms period: every step lasts at least 10 periods (0.5 s) unless told otherwise;
    a sweep whose points run no bubble, or a full-duty bubble, has no period to span."""
    from bubbleup.scenario import scenario_from_dict

    def effective(**over: Any) -> float:
        data = smoke_dict(**{"bubble.cpu_duty": 0.3, "sweep.values": [0, 1], "workload.precision": {}, **over})
        spec = scenario_from_dict(data, "x.yaml").workload
        assert spec is not None and spec.precision is not None
        return spec.precision.min_seconds

    assert effective() == 0.5
    assert effective(**{"bubble.period_ms": 20}) == 0.2
    assert effective(**{"workload.precision": {"min_seconds": 2.0}}) == 2.0  # the larger of the two
    assert effective(**{"workload.precision": {"min_periods": 0}}) == 0.0
    assert effective(**{"sweep.values": [0]}) == 0.0 and effective(**{"bubble.cpu_duty": 1.0}) == 0.0


def test_the_precision_rule_batches_by_the_bubbles_period() -> None:
    """Batches one duty period long (the bubble's, 50 ms by default) where a bubble is duty-cycled, else single
    samples, unless the scenario names its own."""
    from bubbleup.scenario import scenario_from_dict

    def batch(**over: Any) -> float | None:
        data = smoke_dict(**{"bubble.cpu_duty": 0.3, "sweep.values": [0, 1], "workload.precision": {}, **over})
        spec = scenario_from_dict(data, "x.yaml").workload
        assert spec is not None and spec.precision is not None
        return spec.precision.batch_ms

    assert batch() == 50.0 and batch(**{"bubble.period_ms": 20}) == 20.0
    assert batch(**{"bubble.cpu_duty": 1.0}) == 0.0 and batch(**{"sweep.values": [0]}) == 0.0  # no duty cycle met
    assert batch(**{"workload.precision": {"batch_ms": 7}}) == 7.0


@pytest.mark.parametrize(
    ("precision", "problem"),
    [
        ({"target": 1.0}, "workload.precision.target: Input should be less than 1"),
        ({"target": 0}, "workload.precision.target: Input should be greater than 0"),
        ({"max_inferences": 0}, "workload.precision.max_inferences: Input should be greater than or equal to 1"),
        ({"max_seconds": 0}, "workload.precision.max_seconds: Input should be greater than 0"),
        ({"max_inferences": 5}, "workload.precision.max_inferences: 5 is below the 10 inferences"),
        ({"max_seconds": 999}, "workload.precision.max_seconds: 999.0 s must be below limits.step_timeout_s"),
        ({"max_seconds": 0.4, "min_periods": 10},
         "workload.precision.min_periods: 10 periods of 50 ms take 0.5 s, not below max_seconds (0.4 s)"),
    ],
)
@pytest.mark.beside_others  # input checks: nothing timed
def test_bad_precision_is_refused_in_one_line(tmp_path: Path, precision: dict[str, Any], problem: str) -> None:
    data = smoke_dict(**{"workload.precision": precision, "bubble.cpu_duty": 0.5})
    file = write_scenario(tmp_path, data)
    done = run_cli(["validate", str(file)], cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {file}: {problem}")
