"""Accuracy beside latency: top-1 with its interval in every run whose workload knows the answers, each pressure
level's Pareto frontier, and ``bubbleup recommend`` (ApproxDet's rule: the most accurate setting within SLO / margin).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, smoke_dict, write_scenario
from fixtures_runs import make_run

from bubbleup import analysis
from bubbleup.analysis import stats, tradeoff


def test_wilson_matches_the_published_values() -> None:
    # Wilson score intervals at 95% (Newcombe 1998, Table I: 0/10 -> 0-0.2775, 1/29 -> 0.0061-0.1718)
    assert stats.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert stats.wilson(1, 29) == pytest.approx((0.0061, 0.1718), abs=1e-4)
    assert stats.wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_a_repeated_frame_counts_once() -> None:
    """Frames 0-3 inferred 1, 2, 3 and 10 times: 2 of 4 right, whatever the repeats (n is frames, not calls)."""
    samples = [0] + [1] * 2 + [2] * 3 + [3] * 10
    correct = [1.0] + [0.0] * 2 + [1.0] * 3 + [0.0] * 10
    got = stats.top1(samples, correct)
    assert got["top1"] == 0.5 and got["top1_n"] == 4
    assert (got["top1_low"], got["top1_high"]) == pytest.approx(stats.wilson(2, 4))
    assert stats.top1([0, 1], [float("nan")] * 2)["top1_n"] == 0  # nothing said: no accuracy


def test_a_workload_right_on_a_known_share_is_measured_so(tmp_path: Path) -> None:
    """The synthetic workload answers each of its 150 samples right with probability 0.7 (drawn once from its
    seed); a real run must report exactly the share it was right on, over 150 frames, with 0.7 inside the
    interval, in points.csv, the summary and the report."""
    n = 150
    options = {"working_sets_kb": [64], "rounds": 1, "n_samples": n, "correct_share": 0.7}
    data = smoke_dict(**{"workload.options": options, "workload.inferences_per_setting": 90,
                         "sweep.values": [0, 1], "sweep.repeats": 1})  # fmt: skip
    out = tmp_path / "run"
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(out), "-q"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    truth = np.random.default_rng(1).random(n) < 0.7  # the workload's own draw: seed 0 + 1
    points = pd.read_csv(out / "points.csv")
    assert (points["top1_n"] == 90).all()  # 90 timed inferences per point, each on a different frame
    # the worker goes on where the last point left off (2 warm-ups between): 148 of the 150 frames are timed
    samples = pd.read_csv(out / "samples.csv")
    order = [samples[samples.value == v]["sample"].astype(int).tolist() for v in (0, 1)]
    assert order[0] == list(range(92)) and order[1] == [(92 + i) % n for i in range(92)]
    run = analysis.load_run(out)
    acc = tradeoff.setting_accuracy(run)["ws64k"]
    seen = sorted(set(samples[samples.phase == "timed"]["sample"].astype(int)))
    assert acc.n == len(seen) == n - 2 and acc.top1 == pytest.approx(truth[seen].mean())
    assert acc.low < 0.7 < acc.high
    html = (out / "report.html").read_text()
    assert 'id="accuracy-settings"' in html and 'id="fig-accuracy"' in html and f"{acc.top1:.1%}" in html


CURVES = {"LL": [3.0, 4.0, 6.0, 9.0], "MM": [6.0, 8.0, 12.0, 18.0], "HH": [10.0, 14.0, 20.0, 30.0]}
SHARES = {"LL": 0.5, "MM": 0.8, "HH": 0.95}


def profile(tmp_path: Path) -> Path:
    return make_run(tmp_path, CURVES, [0, 1, 2, 3], repeats=2, n=40, noise=0.02, accuracy=SHARES)


def test_recommend_picks_the_most_accurate_setting_that_fits_at_each_level(tmp_path: Path) -> None:
    run = analysis.load_run(profile(tmp_path))
    summary = analysis.summarise(run)
    # budget 14.3 / 1.3 = 11 ms: HH (10) at 0, MM (8) at 1, LL at 2 (MM's 12 is over) and 3
    rec = tradeoff.recommend(run, summary, 14.3)
    assert [lv.chosen.setting if lv.chosen else None for lv in rec.levels] == ["HH", "MM", "LL", "LL"]
    assert rec.no_fit_from is None
    # budget 7 ms: MM (6) at 0, LL (4, 6) at 1 and 2, nothing at 3 (LL's 9): the adaptive system's cliff is 3
    tight = tradeoff.recommend(run, summary, 9.1)
    assert [lv.chosen.setting if lv.chosen else None for lv in tight.levels] == ["MM", "LL", "LL", None]
    assert tight.no_fit_from == 3 and tight.levels[-1].fallback.setting == "LL"
    assert [o.setting for o in tight.levels[0].frontier] == ["LL", "MM", "HH"]
    assert tight.levels[0].chosen.accuracy.top1 == pytest.approx(0.8) and tight.levels[0].chosen.accuracy.n == 40


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_the_recommend_command_prints_the_table_and_the_adaptive_cliff(tmp_path: Path) -> None:
    run_dir = profile(tmp_path)
    done = run_cli(["recommend", str(run_dir), "--slo-ms", "9.1"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("SLO 9.1 ms at the median, margin 1.3") and "7.00 ms" in lines[0]
    assert lines[2].split()[:2] == ["0", "MM"] and "80.0%" in lines[2] and "n=40" in lines[2]
    assert lines[5].split()[:3] == ["3", "none", "fits"] and "fastest: LL" in lines[5]
    assert lines[-1] == "From 3 bubbles on, no setting meets the SLO: the adaptive system's cliff."
    assert "INVALID" not in done.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["validity"] = {"valid": False, "reasons": [{"code": "machine_busy", "message": "someone else"}]}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    done = run_cli(["recommend", str(run_dir), "--slo-ms", "9.1"], cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines() == lines  # the answer, with a warning beside it
    assert f"warning: {run_dir} is INVALID (machine_busy)" in done.stderr, done.stderr


@pytest.mark.beside_others  # input checks: nothing timed
def test_recommend_refuses_what_the_run_cannot_answer(tmp_path: Path) -> None:
    plain = make_run(tmp_path, CURVES, [0, 1], n=40, name="plain")
    done = run_cli(["recommend", str(plain), "--slo-ms", "10"], cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "no accuracy records" in line
    done = run_cli(["recommend", str(profile(tmp_path)), "--slo-ms", "10", "--percentile", "99"], cwd=tmp_path)
    (line,) = done.stderr.splitlines()
    assert done.returncode == 2 and "p99 needs at least 400 timed samples per point" in line and "80" in line
    done = run_cli(["recommend", str(tmp_path / "nowhere"), "--slo-ms", "10"], cwd=tmp_path)
    assert done.returncode == 2 and "not a run directory" in done.stderr


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_a_scenario_slo_puts_the_recommendation_in_the_report(tmp_path: Path) -> None:
    from bubbleup.report import html as report

    run_dir = profile(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.setdefault("scenario_effective", {})["slo"] = {"ms": 9.1, "percentile": 50, "margin": 1.3}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    html = report.write(run_dir).path.read_text()
    table = html.split('id="recommendation-table"')[1].split("</table>")[0]
    assert [r.split("<td>")[2].split("<")[0] for r in table.split("<tr")[2:]] == ["MM", "LL", "LL", "none fits"]
    assert "From 3 bubbles on, no setting meets the SLO" in html


@pytest.mark.beside_others  # input checks: nothing timed
def test_a_bad_slo_or_margin_gets_one_range_in_words(tmp_path: Path) -> None:
    """-5 and 0 are refused by the same rule, said the same way (argparse once said '0 or more' and then 0 was
    refused as 'must be positive')."""
    run_dir = profile(tmp_path)
    for flag, values, says in (("--slo-ms", ["-5", "0"], "--slo-ms must be a positive number of milliseconds"),
                               ("--margin", ["-1", "0", "0.5"], "--margin must be at least 1")):  # fmt: skip
        for value in values:
            done = run_cli(["recommend", str(run_dir), "--slo-ms", "10", flag, value], cwd=tmp_path)
            (line,) = done.stderr.splitlines()
            assert done.returncode == 2 and says in line, (flag, value, line)
