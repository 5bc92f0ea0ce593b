"""Contention that changes during a run (a schedule of phases) and a workload that adapts to it: the pressure
every frame met, from the pool's own log; the adaptive policy's sensor and rule on a recorded trace; the
profile it runs on, refused in one line when it cannot serve."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, smoke_dict, write_scenario

from bubbleup import analysis
from bubbleup.analysis import schedule, stats
from bubbleup.sweep.adaptive import Policy, Profile, Rule, choose, sense

#: The synthetic workload's options in these tests: 32 rounds make a frame ~0.2 ms (at 2 rounds, ~0.01 ms: a
#: 3.5 s step timed 10^5 frames, and the test spent most of its time writing and reading them).
OPTIONS = {"working_sets_kb": [64, 256], "rounds": 32, "n_samples": 16, "correct_share": [0.5, 0.9]}
PHASES = [{"bubbles": 0, "seconds": 1.0}, {"bubbles": 2, "seconds": 1.5}, {"bubbles": 1, "seconds": 1.0}]


def schedule_dict(**overrides: object) -> dict[str, object]:
    data = smoke_dict(**{"workload.options": OPTIONS,
                         "bubble": {"size_mb": 16, "cpu_duty": 0.5, "pattern": "stream"},
                         "sweep": {"axis": "schedule", "phases": PHASES, "settle_s": 0.0}})  # fmt: skip
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})  # type: ignore[assignment]
        node[leaf] = value  # type: ignore[index]
    return data


def test_every_frame_records_the_pressure_the_pool_log_says_was_in_force(tmp_path: Path) -> None:
    """A schedule of 0, 2, then 1 bubbles while one worker infers: each timed frame's live_bubbles equals the
    bubbles that bubbles.csv (the pool's log: ready_s, stopped_s) says were up at the frame's start; frames
    well inside a phase met that phase's bubbles; bubbles that joined were ready-gated and the frames meanwhile
    kept and marked; every step lasted the whole schedule."""
    out = tmp_path / "run"
    done = run_cli(["run", str(write_scenario(tmp_path, schedule_dict())), "--out", str(out), "-q"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    samples = pd.read_csv(out / "samples.csv")
    bubbles = pd.read_csv(out / "bubbles.csv")
    timed = samples[samples.phase == "timed"]
    assert set(timed["setting"]) == {"ws64k", "ws256k"}
    # each step went through phase 0 (no bubble), 2 bubbles, then 1: three bubble processes per step
    assert len(bubbles) == 2 * 2 and bubbles["pid"].is_unique
    assert bubbles["ready_s"].notna().all() and (bubbles["started_s"] < bubbles["ready_s"]).all()
    stopped = bubbles["stopped_s"].fillna(math.inf).to_numpy()
    ready = bubbles["ready_s"].to_numpy()
    starts = (timed["t_s"] - timed["latency_ms"] / 1e3).to_numpy()
    from_log = np.array([int(((ready <= t) & (t < stopped)).sum()) for t in starts])
    # The files keep times to the microsecond: a frame that started within that of a bubble's ready or stop
    # (one in 36170 in a CI run: 11 ns after ready by the files, before it by the pool's clock) cannot be placed.
    edges = np.concatenate([ready, stopped[np.isfinite(stopped)]])
    clear = np.abs(starts[:, None] - edges[None, :]).min(axis=1) > 2e-6
    assert clear.mean() > 0.99
    assert (timed["live_bubbles"].to_numpy()[clear] == from_log[clear]).all()
    for step, g in timed.groupby("step"):
        t0 = float((g["t_s"] - g["latency_ms"] / 1e3).min())
        rel = (g["t_s"] - g["latency_ms"] / 1e3) - t0
        assert set(g["schedule_phase"]) == {0, 1, 2}, step
        assert rel.max() == pytest.approx(3.5, abs=0.5)  # the step lasted the schedule (3.5 s)
        for k, phase in enumerate(PHASES):
            begin = sum(p["seconds"] for p in PHASES[:k])
            inside = g[(rel > begin + 0.3) & (rel < begin + phase["seconds"] - 0.05) & (g["transition"] == 0)]
            assert len(inside) and (inside["live_bubbles"] == phase["bubbles"]).all(), (step, k)
            assert (inside["schedule_phase"] == k).all()
        # the joiners of phase 1 were marked while they became ready, and no frame was dropped meanwhile
        joining = g[(g["transition"] == 1) & (g["schedule_phase"] == 1)]
        assert len(joining) > 0
        assert g["iteration"].tolist() == list(range(len(g)))
    assert (samples.loc[samples.phase == "warmup", "schedule_phase"] == -1).all()
    result = schedule.analyse(analysis.load_run(out))
    assert result is not None and [s.series for s in result.series] == ["ws64k", "ws256k"]
    for series in result.series:  # percentiles by nearest rank, as everywhere: a latency some frame really had
        lat = timed.loc[timed["setting"] == series.series, "latency_ms"]
        assert series.p95_ms == pytest.approx(stats.nearest_rank(lat, 95)) and series.p95_ms in set(lat)
    html = (out / "report.html").read_text()
    assert 'id="schedule"' in html
    # no SLO given: no frame is judged against one (it read "held to the SLO of nan ms", 0.0% per phase, every
    # row failed), and the sweep is said as the schedule it was, not as "bubble size (MiB): 0"
    assert not result.has_slo and "no SLO given" in result.lines()[0] and "nan" not in "\n".join(result.lines())
    assert "No SLO was" in html and "nan ms" not in html and "nan%" not in html
    table = html.split('id="schedule-table"')[1].split("</table>")[0]
    assert "status-failed" not in table
    assert "schedule: 0 bubbles for 1 s then 2 bubbles for 1.5 s then 1 bubble for 1 s" in html
    assert "State an SLO" not in html


def test_the_policy_switches_where_its_sensor_sees_the_level_change() -> None:
    """A hand-made profile at 0, 2 and 4 bubbles (levels 0-2): B is more accurate, A faster. Budget 2.5 ms: at level 0
    B fits (2 ms), at level 1 only
    A does (1.5 ms), at level 2 nothing does and the fastest, A, runs. A recorded trace of B's latencies, 2 ms for
    20 frames then 3 ms: with every=4 and window=8, the median of frames 17-24 (four 2s, four 3s: 2.5) is nearer
    3 than 2 in log space, so the decision after frame 24 moves to level 1 and the 25th frame runs A."""
    table = {"A": (1.0, 1.5, 3.0), "B": (2.0, 3.0, 6.0)}
    profile = Profile(levels=(0.0, 2.0, 4.0), latency_ms=table, median_ms=table, accuracy={"A": 0.5, "B": 0.9})
    assert [choose(profile, k, 2.5) for k in range(3)] == ["B", "A", "A"]
    # the boundary between levels 0 and 1 of B lies at the geometric mean of 2 and 3 (2.449)
    assert sense(profile, "B", 2.5) == 1 and sense(profile, "B", 2.4) == 0 and sense(profile, "A", 9.0) == 2
    policy = Policy(profile, Rule(slo_ms=2.5 * 1.3, margin=1.3, every=4, window=8))
    # the recorded trace: each frame takes its setting's profiled median at the true level, 0 then 1 from frame 20
    chosen, current = [], policy.setting
    for frame in range(40):
        chosen.append(current)
        current = policy.observe(profile.median_ms[current][0 if frame < 20 else 1], switched=False)
    assert chosen[:24] == ["B"] * 24 and chosen[24] == "A"
    # A then runs at 1.5 ms, which the sensor reads as level 1 (index 1: 2 bubbles), where A is the choice
    assert set(chosen[24:]) == {"A"} and policy.level == 1 and policy.level_value == 2.0
    # frames that paid a switch are not fed to the sensor
    p2 = Policy(profile, Rule(slo_ms=2.5 * 1.3, margin=1.3, every=1, window=2))
    for latency in [50.0, 50.0, 50.0]:
        p2.observe(latency, switched=True)
    assert p2.setting == "B" and p2.level == 0


def _profile_run(tmp_path: Path) -> Path:
    """A real profile: the synthetic workload's two settings under 0 and 1 bubbles, with accuracy."""
    data = smoke_dict(**{"name": "profile", "workload.inferences_per_setting": 20,
                         "workload.options": OPTIONS})  # fmt: skip
    out = tmp_path / "profile"
    done = run_cli(["run", str(write_scenario(tmp_path, data, "profile.yaml")), "--out", str(out), "-q",
                    "--no-report"], cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_an_adaptive_workload_runs_through_a_schedule_on_its_profile(tmp_path: Path) -> None:
    """Adaptive synthetic beside the fixed settings under one schedule: every candidate was warmed before timing,
    every timed frame says which candidate ran and at which profiled level it was chosen, the manifest keeps the
    profile table, and the report's side-by-side table states the targets."""
    profile = _profile_run(tmp_path)
    adapt = {"profile": str(profile), "slo_ms": 50.0, "every": 2, "window": 4}
    data = schedule_dict(**{"workload": None})
    data.pop("workload")
    base = {"kind": "synthetic", "warmup": 2, "inferences_per_setting": 10,
            "options": OPTIONS}
    data["workloads"] = [{**base, "label": "fixed"}, {**base, "label": "adaptive", "adapt": adapt}]
    data["sweep"] = {"axis": "schedule", "phases": PHASES[:2], "settle_s": 0.0}
    out = tmp_path / "run"
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(out), "-q"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    table = manifest["adapt_profiles"]["adaptive"]
    assert table["levels"] == [0.0, 1.0] and set(table["latency_ms"]) == {"ws64k", "ws256k"}
    samples = pd.read_csv(out / "samples.csv")
    mine = samples[samples.workload == "adaptive"]
    assert set(mine["setting"]) == {"adaptive"}
    warm = mine[mine.phase == "warmup"]
    assert sorted(warm.groupby("ran_setting").size().items()) == [("ws256k", 2), ("ws64k", 2)]
    timed = mine[mine.phase == "timed"]
    assert set(timed["ran_setting"]) <= {"ws64k", "ws256k"} and timed["level"].isin([0.0, 1.0]).all()
    # the SLO is generous: the policy picks the more accurate setting, and its frames are right as often as that
    # setting's known share says (0.9 of 16 frames, drawn from the seed)
    assert (timed["ran_setting"] == "ws256k").mean() > 0.9
    result = schedule.analyse(analysis.load_run(out))
    assert result is not None
    names = [s.series for s in result.series]
    assert names == ["fixed:ws64k", "fixed:ws256k", "adaptive:adaptive"]
    lines = "\n".join(result.lines())
    assert "adaptive:adaptive: within 50 ms" in lines and "best fixed" in lines
    truth = np.random.default_rng(1).random(16) < 0.9
    fixed = next(s for s in result.series if s.series == "fixed:ws256k")
    frames = samples[(samples.workload == "fixed") & (samples.setting == "ws256k") & (samples.phase == "timed")]
    assert fixed.accuracy == pytest.approx(truth[frames["sample"].astype(int)].mean())
    html = (out / "report.html").read_text()
    assert 'id="schedule"' in html and "best fixed" in html


@pytest.mark.parametrize(
    ("sweep", "field"),
    [
        ({"axis": "schedule", "phases": [{"bubbles": 1, "seconds": 0}]}, "sweep.phases.0.seconds"),
        ({"axis": "schedule", "phases": [{"bubbles": 1, "seconds": 2}, {"bubbles": 0, "seconds": -1}]},
         "sweep.phases.1.seconds"),
        ({"axis": "schedule", "phases": [{"bubbles": -1, "seconds": 2}]}, "sweep.phases.0.bubbles"),
        ({"axis": "schedule", "phases": []}, "sweep.phases"),
        ({"axis": "schedule", "values": [1], "phases": [{"bubbles": 1, "seconds": 2}]}, "sweep.values"),
        ({"axis": "count", "values": [1], "phases": [{"bubbles": 1, "seconds": 2}]}, "sweep.phases"),
    ],
)  # fmt: skip
@pytest.mark.beside_others  # input checks: nothing timed
def test_a_bad_schedule_is_one_line_exit_2(tmp_path: Path, sweep: dict[str, object], field: str) -> None:
    path = write_scenario(tmp_path, smoke_dict(sweep=sweep))
    done = run_cli(["run", str(path), "--out", str(tmp_path / "run")], cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {field}:"), done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.beside_others  # input checks: nothing timed
def test_an_adapt_profile_that_cannot_serve_is_refused_in_one_line(tmp_path: Path) -> None:
    """A profile that is not a run directory, and one that never measured a candidate: exit 2 before anything runs,
    naming the file, the field and what is missing."""
    missing = smoke_dict(**{"workload.adapt": {"profile": str(tmp_path / "nowhere"), "slo_ms": 10}})
    path = write_scenario(tmp_path, missing)
    done = run_cli(["run", str(path), "--out", str(tmp_path / "run")], cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert f"{path}: workload.adapt.profile:" in done.stderr and "not a run directory" in done.stderr
    profile = _profile_run(tmp_path)
    other = smoke_dict(**{"workload.options": {"working_sets_kb": [64, 1024], "rounds": 2},
                          "workload.adapt": {"profile": str(profile), "slo_ms": 10}})  # fmt: skip
    path = write_scenario(tmp_path, other, "other.yaml")
    done = run_cli(["run", str(path), "--out", str(tmp_path / "run")], cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "workload.adapt.profile:" in done.stderr and "ws1024k" in done.stderr
    newer = json.loads((profile / "manifest.json").read_text())
    (profile / "manifest.json").write_text(json.dumps({**newer, "schema_version": 99}))
    path = write_scenario(tmp_path, smoke_dict(**{"workload.adapt": {"profile": str(profile), "slo_ms": 10}}), "n.yaml")
    done = run_cli(["run", str(path), "--out", str(tmp_path / "run")], cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{path}: workload.adapt.profile: " in done.stderr and "schema_version: 99 is newer" in done.stderr
    assert not (tmp_path / "run").exists()
