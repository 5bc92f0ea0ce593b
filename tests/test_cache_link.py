"""placement: apart times one cache line between the workload's and the bubbles' CPUs before every step, and the
report says at which steps they shared no L3 (a VM's vCPUs move between L3 domains)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import run_cli, smoke_dict, write_scenario

from bubbleup.analysis import cache_link as link_facts
from bubbleup.analysis.summary import setting_curves
from bubbleup.machine.cache_link import round_trip_ns
from bubbleup.pressure.placement import allowed_cpus
from bubbleup.store.reader import load_run

CPUS = allowed_cpus()
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="a round trip needs two CPUs")


@needs_two
def test_a_round_trip_is_timed_between_two_cpus_and_its_helper_is_gone() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    trips = [round_trip_ns(CPUS[0], CPUS[1]) for _ in range(3)]
    # A cache line across cores takes tens to hundreds of ns; from Python a few hundred, never a millisecond.
    assert all(10 < t < 100_000 for t in trips), trips
    assert math.isnan(round_trip_ns(CPUS[0], max(CPUS) + 1))  # a CPU this process may not use: no number
    assert math.isnan(round_trip_ns(CPUS[0], CPUS[0]))  # one CPU is no link
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before  # helper and partner have exited


def points(trips: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"repeat": [0] * len(trips), "value": [16.0 * i for i in range(len(trips))],
                         "setting": ["s"] * len(trips), "cpu_link_ns": trips})  # fmt: skip


@pytest.mark.beside_others  # made-up points: nothing timed
def test_steps_well_above_the_runs_fastest_round_trip_are_named_as_apart() -> None:
    found = link_facts.facts(points([200.0, 290.0, 350.0, 205.0, math.nan]), "size_mb")
    assert found is not None
    assert found.steps == 4  # the NaN step had no round trip timed
    assert found.apart == ("s at 32 MiB (repeat 1)",)  # 350 > 1.5 x 200; 290 (a cut-into block) is not
    assert found.sentence().startswith("At 1 of 4 steps the workload's and the bubbles' CPUs did not share")
    assert "350-350 ns, against 200-290 ns" in found.sentence()
    shared = link_facts.facts(points([200.0, 210.0]), "size_mb")
    assert shared is not None and not shared.apart and "before every one of the 2 steps" in shared.sentence()
    assert link_facts.facts(points([math.nan, math.nan]), "size_mb") is None  # not apart: nothing to say
    assert link_facts.facts(pd.DataFrame({"repeat": [0]}), "count") is None  # a run from before the column


@needs_two
def test_an_apart_run_times_the_link_before_every_step_and_other_placements_do_not(tmp_path: Path) -> None:
    trips = {}
    for placement in ("apart", "free"):
        data = smoke_dict(**{"bubble": {"kind": "cpu", "cpu_duty": 0.2}, "cpus": {"placement": placement},
                             "name": f"link-{placement}"})  # fmt: skip
        out = tmp_path / placement
        done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(out), "-q"], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        trips[placement] = pd.read_csv(out / "points.csv")["cpu_link_ns"]
        said = "shared a last-level cache" in done.stdout or "did not share a last-level cache" in done.stdout
        assert said == (placement == "apart"), done.stdout
    assert len(trips["apart"]) == 4 and trips["apart"].between(10, 100_000).all()  # 2 settings x 2 values
    assert trips["free"].isna().all()

    # One step made to read as timed apart (3x the run's fastest): verdicts and curves leave its samples out, the
    # tables keep them, and the report names it.
    run_dir = tmp_path / "apart"
    points = pd.read_csv(run_dir / "points.csv")
    away = points.index[(points["value"] == 1) & (points["setting"] == points["setting"].iloc[0])][0]
    points.loc[away, "cpu_link_ns"] = 3 * points["cpu_link_ns"].min()
    points.to_csv(run_dir / "points.csv", index=False)
    run = load_run(run_dir)
    curves = {c.setting: {p.value: len(p.samples) for p in c.points} for c in setting_curves(run)}
    assert curves[points.loc[away, "setting"]][1.0] == 0 and curves[points.loc[away, "setting"]][0.0] > 0
    assert all(n > 0 for setting, c in curves.items() if setting != points.loc[away, "setting"] for n in c.values())
    assert len(run.samples[(run.samples["value"] == 1) & (run.samples["setting"] == points.loc[away, "setting"])])
    done = run_cli(["report", str(run_dir)], cwd=tmp_path)
    assert "At 1 of 4 steps" in done.stdout and "verdicts and curves leave them out" in done.stdout, done.stdout
