"""sweep.replication: more repeats only at the steps whose repeats disagree, recorded, resumable, judged."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import TESTS, descendants, run_cli, running_cli, smoke_dict, wait_all_gone, wait_until, write_scenario

from bubbleup.analysis.summary import missing_points
from bubbleup.report.facts import repeats_fact
from bubbleup.specs import ReplicationSpec
from bubbleup.store.manifest import LISTED_ONLY, Manifest
from bubbleup.store.reader import load_run
from bubbleup.sweep.replication import next_round, repeats_ran, spreads, wanting


def frame(levels: dict[tuple[int, str], list[float]], probes: dict[tuple[int, int], float] | None = None,
          n: int = 40) -> pd.DataFrame:  # fmt: skip
    """Timed samples: per (value, setting) one list of repeat levels, ``n`` samples each around it (+/-1%)."""
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for (value, setting), per_repeat in levels.items():
        for r, level in enumerate(per_repeat):
            probe = (probes or {}).get((value, r), 1000.0)
            for x in level * rng.uniform(0.99, 1.01, n):
                rows.append({"repeat": r, "value": value, "workload": "w", "setting": setting, "phase": "timed",
                             "latency_ms": x, "speed_ns": probe})  # fmt: skip
    return pd.DataFrame(rows)


def test_only_the_steps_whose_repeats_disagree_ask_for_another() -> None:
    samples = frame({(0, "a"): [10.0, 10.1, 9.9], (0, "b"): [5.0, 5.02, 4.98],
                     (4, "a"): [10.0, 13.0, 11.0], (4, "b"): [5.0, 5.1, 4.9]})  # fmt: skip
    by_step = {(p.value, p.setting): p for p in spreads(samples)}
    assert set(by_step) == {(0, "a"), (0, "b"), (4, "a"), (4, "b")} and by_step[4, "a"].repeats == 3
    expected = float(np.std([10.0, 13.0, 11.0], ddof=1) / np.mean([10.0, 13.0, 11.0]) / math.sqrt(3))
    assert by_step[4, "a"].relative_se == pytest.approx(expected, rel=0.02)
    assert by_step[0, "a"].relative_se < 0.01 and by_step[4, "b"].relative_se < 0.03
    assert [p.step for p in wanting(samples, 0.03, 6)] == [(4, "w", "a")]  # not (4, "b"), at the same point
    assert wanting(samples, 0.03, 3) == []  # at max_repeats already
    assert wanting(samples, 0.5, 6) == []


def test_a_round_measures_only_the_steps_it_lists_and_counts_their_repeats_alone() -> None:
    """The round's entry lists the steps it measures; the next round counts a repeat only for the steps it had."""
    samples = frame({(0, "a"): [10.0, 10.1, 9.9], (0, "b"): [5.0, 5.02, 4.98],
                     (4, "a"): [10.0, 13.0, 11.0], (4, "b"): [5.0, 5.1, 4.9]})  # fmt: skip
    plan = [(r, v) for r in range(3) for v in (0, 4)]
    rule = ReplicationSpec(target=0.03, max_repeats=6)
    extra, entry, note = next_round(samples, plan, [], rule, "ascending", 0)
    assert extra == [(3, 4)] and entry["repeat"] == 3 and entry[LISTED_ONLY] is True
    assert [(p["value"], p["workload"], p["setting"]) for p in entry["points"]] == [(4, "w", "a")]
    assert note.startswith("repeat 4: 1 step(s) at 1 point(s)")
    m = Manifest(plan=[*plan, *extra], replication=[entry])
    assert m.round_steps(3) == {(4, "w", "a")} and m.round_steps(2) is None
    more = frame({(0, "a"): [10.0, 10.1, 9.9], (0, "b"): [5.0, 5.02, 4.98],
                  (4, "a"): [10.0, 13.0, 11.0, 12.0], (4, "b"): [5.0, 5.1, 4.9]})  # fmt: skip
    ran = repeats_ran(m.plan, m.replication)
    assert ran((4, "w", "a")) == 4 and ran((4, "w", "b")) == 3 and ran((0, "w", "a")) == 3
    assert {(p.setting, p.repeats) for p in spreads(more, ran) if p.value == 4} == {("a", 4), ("b", 3)}


def test_a_step_that_keeps_failing_stops_at_max_repeats() -> None:
    """A failed step leaves no samples: counted by the samples, the step would stay at one repeat, its spread
    unknown (infinite), and ask for another round for ever. Its repeats are counted from the plan."""
    samples = frame({(0, "a"): [10.0, 10.1], (3, "a"): [10.0]})  # at 3, repeat 1 failed: no samples
    plan = [(r, v) for r in range(2) for v in (0, 3)]
    rounds: list[dict[str, Any]] = []
    rule = ReplicationSpec(target=0.03, max_repeats=4)
    for _ in range(5):
        extra, entry, _note = next_round(samples, plan, rounds, rule, "ascending", 0)
        if not extra:
            break
        assert extra == [(max(r for r, _ in plan) + 1, 3)]
        plan, rounds = [*plan, *extra], [*rounds, entry]
    assert extra == [] and [p["value"] for p in entry["points"]] == [3], entry
    assert sum(v == 3 for _, v in plan) == 4 and entry["points"][0]["repeats"] == 4


def test_extra_repeats_follow_the_sweeps_order_shuffle_included() -> None:
    """An extra round is ordered by the sweep's own rule: alternating by its repeat's parity, and under ``shuffle``
    shuffled (not ascending, which would bring back the drift bias shuffling removes), the same on every call."""
    values = list(range(8))
    samples = frame({(v, "a"): [10.0, 13.0, 11.0] for v in values})  # every point disagrees
    plan = [(r, v) for r in range(3) for v in values]
    rule = ReplicationSpec(target=0.01, max_repeats=6)
    assert [v for _, v in next_round(samples, plan, [], rule, "alternate", 0)[0]] == values[::-1]  # repeat 3: odd
    assert [v for _, v in next_round(samples, [*plan, (3, 0)], [], rule, "alternate", 0)[0]] == values  # repeat 4
    drawn = [[v for _, v in next_round(samples, plan, [], rule, "shuffle", seed)[0]] for seed in (0, 0, 1)]
    assert sorted(drawn[0]) == values and drawn[0] not in (values, values[::-1])
    assert drawn[0] == drawn[1] != drawn[2]  # seeded: a resumed run draws the same round


def test_a_repeat_slower_only_because_the_cpu_was_slower_is_not_disagreement() -> None:
    # Repeat 1 ran 30% slower, and its speed probe says the CPU was 30% slower: at one speed they agree.
    slow_cpu = frame({(2, "a"): [10.0, 13.0, 10.0]}, probes={(2, 1): 1300.0})
    assert spreads(slow_cpu)[0].relative_se < 0.01
    same_cpu = frame({(2, "a"): [10.0, 13.0, 10.0]})
    assert spreads(same_cpu)[0].relative_se > 0.05


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def scenario(tmp_path: Path, target: float, max_repeats: int) -> Path:
    data = smoke_dict(**{"sweep.values": [0, 1], "sweep.repeats": 2, "sweep.settle_s": 0.0,
                         "sweep.replication": {"target": target, "max_repeats": max_repeats}})  # fmt: skip
    return write_scenario(tmp_path, data)


def test_an_unreachable_target_repeats_every_point_to_max_repeats_and_says_invalid(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_cli(["run", str(scenario(tmp_path, 1e-6, 4)), "--out", str(out), "-q", "--no-report"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    points = pd.read_csv(out / "points.csv")
    assert set(zip(points["repeat"], points["value"], strict=True)) == {(r, v) for r in range(4) for v in (0, 1)}
    m = manifest(out)
    assert [tuple(p) for p in m["plan"][4:]] == [(2, 0), (2, 1), (3, 1), (3, 0)]  # extra repeats alternate too
    assert [r["repeat"] for r in m["replication"]] == [2, 3, None]
    assert {p["value"] for p in m["replication"][-1]["points"]} == {0, 1}
    assert all(p["repeats"] == 4 for p in m["replication"][-1]["points"])
    reasons = {r["code"]: r["message"] for r in m["validity"]["reasons"]}
    assert "repeats" in reasons and "max_repeats" in reasons["repeats"]
    run = load_run(out)  # the report's facts say how many repeats were added
    assert repeats_fact(run, run.effective["sweep"]).endswith(": 4 more point-repeat(s) of 8 step(s) in all")


def test_an_extra_round_measures_only_the_steps_it_lists(tmp_path: Path) -> None:
    """Two settings at one point, each repeat in a fresh worker: 'noisy' sleeps 2 ms in odd-numbered workers and
    20 ms in even ones, 'steady' 2 ms in all. Every round lists 'noisy'; each extra repeat measures exactly the steps
    its round lists ('steady' too only if the VM made its repeats disagree), and the run is whole without the rest."""
    data = smoke_dict(**{"sweep.values": [0], "sweep.repeats": 2, "telemetry.enabled": False,
                         "sweep.replication": {"target": 0.15, "max_repeats": 4}})  # fmt: skip
    data["workload"] = {"kind": "python", "inferences_per_setting": 50, "warmup": 5, "restart": "per_repeat",
                        "options": {"function": "helpers_workload:sleep_s", "setup": "helpers_workload:setup_level",
                                    "settings": ["steady", "noisy"], "path": str(TESTS)}}  # fmt: skip
    out = tmp_path / "run"
    env = {**os.environ, "BUBBLEUP_TEST_WORKER_COUNT": str(tmp_path / "workers")}
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(out), "-q"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    m = manifest(out)
    assert [tuple(p) for p in m["plan"]] == [(0, 0), (1, 0), (2, 0), (3, 0)]
    rounds = m["replication"]
    assert [r["repeat"] for r in rounds] == [2, 3, None] and all(r.get(LISTED_ONLY) for r in rounds[:2])
    points = pd.read_csv(out / "points.csv")
    for r in rounds[:2]:
        listed = {p["setting"] for p in r["points"]}
        assert "noisy" in listed
        assert sorted(points.loc[points["repeat"] == r["repeat"], "setting"]) == sorted(listed)
    assert sorted(points.loc[points["repeat"] < 2, "setting"]) == ["noisy", "noisy", "steady", "steady"]
    unmet = rounds[-1]["points"]
    assert ("noisy", 4) in {(p["setting"], p["repeats"]) for p in unmet}
    reasons = {r["code"]: r["message"] for r in m["validity"]["reasons"]}
    assert reasons["repeats"].startswith(f"{len(unmet)} step(s) still disagreed") and "noisy at 0 bubbles" in \
        reasons["repeats"]  # fmt: skip
    run = load_run(out)
    assert missing_points(run) == [] and "all 4 planned points were measured" in (out / "report.html").read_text()
    steps = sum(len(r["points"]) for r in rounds[:2])
    assert repeats_fact(run, run.effective["sweep"]).endswith(f": 2 more point-repeat(s) of {steps} step(s) in all")


def test_a_met_target_adds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_cli(["run", str(scenario(tmp_path, 0.9, 6)), "--out", str(out), "-q", "--no-report"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    m = manifest(out)
    assert len(m["plan"]) == 4 and m["replication"] == [{"repeat": None, "points": []}]
    assert "repeats" not in {r["code"] for r in m["validity"]["reasons"]}
    assert set(pd.read_csv(out / "points.csv")["repeat"]) == {0, 1}


def test_a_run_killed_in_an_extra_repeat_resumes_it_and_finishes_the_rounds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", str(scenario(tmp_path, 1e-6, 4)), "--out", str(out), "-q", "--no-report"]
    with running_cli(args, cwd=tmp_path) as (proc, kids):

        def in_extra_repeat() -> bool:
            kids[:] = [k.pid for k in descendants(proc.pid)] or kids
            try:
                return len(manifest(out)["plan"]) > 4
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                return False

        wait_until(in_extra_repeat, 90, "an extra repeat in the manifest's plan", interval_s=0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_all_gone(kids, 3.0)
    assert len(manifest(out)["plan"]) == 6 and manifest(out)["status"] != "complete"
    done = run_cli(["run", "--resume", str(out), "-q", "--no-report"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    points = pd.read_csv(out / "points.csv")
    assert not points.duplicated(["repeat", "value", "step"]).any()
    assert set(zip(points["repeat"], points["value"], strict=True)) == {(r, v) for r in range(4) for v in (0, 1)}
    m = manifest(out)
    assert m["status"] == "complete" and [r["repeat"] for r in m["replication"]] == [2, 3, None]


@pytest.mark.parametrize(
    ("replication", "repeats", "problem"),
    [
        ({"target": 0.03, "max_repeats": 6}, 1, "sweep.replication: needs repeats of at least 2"),
        ({"target": 0.03, "max_repeats": 2}, 3, "sweep.replication.max_repeats: 2 is below repeats (3)"),
        ({"target": 1.5, "max_repeats": 6}, 3, "sweep.replication.target: Input should be less than 1"),
        ({"target": 0.03}, 3, "sweep.replication.max_repeats: required but missing"),
    ],
)
@pytest.mark.beside_others  # input checks: nothing timed
def test_bad_replication_is_refused_in_one_line(tmp_path: Path, replication: dict[str, Any], repeats: int,
                                                problem: str) -> None:  # fmt: skip
    path = write_scenario(tmp_path, smoke_dict(**{"sweep.repeats": repeats, "sweep.replication": replication}))
    done = run_cli(["validate", str(path)], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0], lines


def test_samples_of_a_step_that_failed_are_not_a_repeat(tmp_path: Path) -> None:
    """A step whose pressure was not held keeps its samples in samples.csv but describes no point: every
    statistic leaves it out, and so does the decision to repeat."""
    from fixtures_runs import make_run

    from bubbleup.sweep.replication import read_samples

    out = make_run(tmp_path, {"LL": [10, 11], "HH": [20, 22]}, [0, 1], repeats=3)
    points = pd.read_csv(out / "points.csv")
    failed = (points["repeat"] == 1) & (points["value"] == 1) & (points["setting"] == "LL")
    points["error"] = points["error"].astype(object)
    points.loc[failed, ["status", "error"]] = ["failed", "pressure not held: a bubble died"]
    points.to_csv(out / "points.csv", index=False)
    samples = read_samples(out)
    at = samples[(samples["value"] == 1) & (samples["setting"] == "LL")]
    assert sorted(set(at["repeat"])) == [0, 2] and len(at) > 0
    assert sorted(set(samples[samples["setting"] == "HH"]["repeat"])) == [0, 1, 2]
    assert len(pd.read_csv(out / "samples.csv").query("phase == 'timed'")) > len(samples)
