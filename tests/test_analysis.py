"""Statistics on saved run directories: percentiles, CIs, pooling, slowdown, failures, partial runs."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import make_run

from bubbleup import analysis
from bubbleup.analysis import monotone, tradeoff, validity
from bubbleup.report import figures
from bubbleup.store.records import POINT_COLUMNS, SAMPLE_COLUMNS

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others

VALUES = [0, 1, 2, 3]


def test_nearest_rank_on_known_values() -> None:
    x = np.arange(1.0, 101.0)
    assert [analysis.nearest_rank(x, p) for p in (50, 90, 95, 99, 100)] == [50, 90, 95, 99, 100]
    thirty = np.arange(1.0, 31.0)
    assert analysis.nearest_rank(thirty, 99) == 30  # p99 of 30 samples is the max
    assert analysis.nearest_rank(thirty, 90) == 27  # ceil(0.9 * 30) = 27, an observed value
    assert math.isnan(analysis.nearest_rank(np.array([]), 50))


def test_thin_tails_are_flagged_in_words() -> None:
    d = analysis.describe(np.arange(1.0, 31.0))
    assert d["p99_ms"] == d["max_ms"] == 30
    assert d["p99_thin"] and d["p95_thin"] and d["p90_thin"]  # p90 of 30 rests on 30 - 27 + 1 = 4 samples
    assert d["tail_note"] == "p90 rests on 4 samples; p95 rests on 2 samples; p99 = max (n=30)"
    fifty = analysis.describe(np.arange(1.0, 51.0))
    assert not fifty["p90_thin"] and fifty["p95_thin"] and fifty["p99_thin"]  # 6, 3 and 1 samples at or above
    big = analysis.describe(np.arange(1.0, 1001.0))
    assert not (big["p90_thin"] or big["p95_thin"] or big["p99_thin"])
    assert big["tail_note"] == ""


def test_the_interquartile_mean_follows_the_shares_of_two_modes_where_the_median_jumps() -> None:
    """compare's statistic. Latency with two modes (4 ms unpreempted, 12 ms preempted), the slow mode holding
    48% of inferences in one run and 52% in the next: the median jumps from one mode to the other (3x), the IQM
    moves with the share (a few percent). And the IQM is scipy's trim_mean(x, 0.25), along any axis."""
    from scipy import stats as scipy_stats

    from bubbleup.analysis.stats import IQM, _statistic, replicate_statistic

    rng = np.random.default_rng(0)

    def run(slow_share: float) -> np.ndarray:
        slow = rng.random(2000) < slow_share
        return np.where(slow, 12.0, 4.0) * rng.lognormal(0.0, 0.03, 2000)

    a, b = run(0.48), run(0.52)
    assert replicate_statistic([b]) / replicate_statistic([a]) > 2.5
    assert replicate_statistic([b], IQM) / replicate_statistic([a], IQM) == pytest.approx(1.0, abs=0.15)
    for n in (3, 4, 7, 101):
        x = rng.lognormal(0.0, 0.5, (5, n))
        assert replicate_statistic([x[0]], IQM) == pytest.approx(scipy_stats.trim_mean(x[0], 0.25))
        assert np.allclose(_statistic(x, IQM, axis=1), scipy_stats.trim_mean(x, 0.25, axis=1))


def test_median_ci_brackets_the_true_median() -> None:
    rng = np.random.default_rng(1)
    x = 20 * np.exp(rng.normal(0, 0.2, 200))
    lo, hi = analysis.median_ci(x)
    assert lo < np.median(x) < hi
    assert lo < 20 < hi
    assert hi - lo < 3
    assert analysis.median_ci(np.array([5.0, 5.0, 5.0])) == (5.0, 5.0)
    assert all(math.isnan(v) for v in analysis.median_ci(np.array([5.0])))


def test_summarise_pools_repeats_and_normalises(tmp_path) -> None:
    run = analysis.load_run(make_run(tmp_path, {"A": [10, 12, 15, 30], "B": [5, 5, 5, 5]}, VALUES, repeats=3, n=20))
    s = analysis.summarise(run)
    assert list(s.columns) == list(analysis.SUMMARY_COLUMNS)
    assert list(s["setting"]) == ["A"] * 4 + ["B"] * 4  # manifest order, then pressure
    assert (s["n"] == 60).all() and (s["n_repeats"] == 3).all()  # warm-ups excluded, repeats pooled
    a = s[s["setting"] == "A"].set_index("value")
    assert a.loc[0, "slowdown"] == 1.0 and a.loc[0, "qos"] == 1.0
    assert a.loc[3, "slowdown"] == pytest.approx(3.0, rel=0.1)
    assert a.loc[3, "qos"] == pytest.approx(1 / a.loc[3, "slowdown"])
    assert (a["ci_low_ms"] < a["median_ms"]).all() and (a["median_ms"] < a["ci_high_ms"]).all()
    assert (a["rep_median_min_ms"] <= a["median_ms"]).all() and (a["median_ms"] <= a["rep_median_max_ms"]).all()
    assert a.loc[2, "bubble_count"] == 2 and a.loc[2, "bubble_size_mb"] == 512
    assert a.loc[0, "first_use_ms"] == pytest.approx(30.0)  # the fake's first warm-up is 3x the median
    assert (s["status"] == "ok").all()


def test_failed_points_keep_their_status_and_error(tmp_path) -> None:
    run = analysis.load_run(
        make_run(tmp_path, {"A": [10, 11, 12, 13]}, VALUES, repeats=2, failed={("A", 3): "timeout"})
    )
    s = analysis.summarise(run).set_index("value")
    assert s.loc[3, "status"] == "timeout"
    assert (s.loc[3, "n_attempts"], s.loc[3, "n_failed"], s.loc[3, "n"]) == (2, 2, 0)
    assert math.isnan(s.loc[3, "median_ms"]) and math.isnan(s.loc[3, "slowdown"])
    assert "timeout" in s.loc[3, "error"]
    assert s.loc[2, "status"] == "ok"


def test_a_failure_in_one_repeat_marks_the_point_and_drops_its_samples(tmp_path) -> None:
    run_dir = make_run(tmp_path, {"A": [10, 11, 12, 13]}, VALUES, repeats=2, n=10)
    points = pd.read_csv(run_dir / "points.csv")
    bad = (points["repeat"] == 1) & (points["value"] == 2)
    points["error"] = points["error"].astype(object)
    points.loc[bad, ["status", "error"]] = ["failed", "worker died: MemoryError"]
    points.to_csv(run_dir / "points.csv", index=False)
    s = analysis.summarise(analysis.load_run(run_dir)).set_index("value")
    assert s.loc[2, "status"] == "failed" and (s.loc[2, "n_attempts"], s.loc[2, "n_failed"]) == (2, 1)
    assert s.loc[2, "n"] == 10  # only the repeat that finished ok counts
    assert s.loc[2, "error"] == "worker died: MemoryError"


def test_missing_points_of_an_interrupted_run(tmp_path) -> None:
    run = analysis.load_run(
        make_run(
            tmp_path,
            {"A": [1, 2, 3, 4], "B": [1, 2, 3, 4]},
            VALUES,
            repeats=2,
            missing=[(1, 0), (1, 1)],
            status="interrupted",
        )
    )
    missing = analysis.missing_points(run)
    assert [(m.repeat, m.value, m.settings) for m in missing] == [(1, 1.0, ("A", "B")), (1, 0.0, ("A", "B"))]
    assert analysis.is_partial(run)
    s = analysis.summarise(run).set_index(["setting", "value"])
    assert s.loc[("A", 0), "n"] == 40 and s.loc[("A", 3), "n"] == 80


def test_plan_as_pairs_and_a_setting_missing_within_a_point(tmp_path) -> None:
    run_dir = make_run(tmp_path, {"A": [1, 2, 3, 4], "B": [1, 2, 3, 4]}, VALUES)
    points = pd.read_csv(run_dir / "points.csv")
    points[~((points["value"] == 3) & (points["setting"] == "B"))].to_csv(run_dir / "points.csv", index=False)
    run = analysis.load_run(run_dir)
    assert run.plan == [(0, 0.0), (0, 1.0), (0, 2.0), (0, 3.0)]
    assert [(m.value, m.settings) for m in analysis.missing_points(run)] == [(3.0, ("B",))]
    assert not analysis.is_partial(analysis.load_run(make_run(tmp_path, {"A": [1, 2]}, [0, 1], name="whole")))


@pytest.mark.parametrize("content", ["", ",".join(SAMPLE_COLUMNS) + "\n"])
def test_empty_samples_do_not_break_anything(tmp_path, content: str) -> None:
    run_dir = make_run(tmp_path, {"A": [10, 11, 12, 13]}, VALUES)
    (run_dir / "samples.csv").write_text(content)
    (run_dir / "points.csv").write_text(",".join(POINT_COLUMNS) + "\n")
    run = analysis.load_run(run_dir)
    assert run.samples.empty and run.points.empty
    assert analysis.summarise(run).empty
    assert analysis.find_cliffs(run) == []
    assert len(analysis.missing_points(run)) == 4


def test_truncated_last_line_is_dropped(tmp_path) -> None:
    run_dir = make_run(tmp_path, {"A": [10, 11, 12, 13]}, VALUES, n=10, telemetry=False)
    text = (run_dir / "samples.csv").read_text()
    (run_dir / "samples.csv").write_text(text + "0,count,3,3,512,0,A,timed,10,0,12.")  # killed mid-write
    run = analysis.load_run(run_dir)
    assert run.telemetry is None
    assert len(run.samples) == len(pd.read_csv(run_dir / "samples.csv")) - 1
    assert analysis.summarise(run)["n"].tolist() == [10, 10, 10, 10]


def test_a_points_row_cut_short_is_not_read_as_a_point(tmp_path) -> None:
    """A point row cut inside its median (a kill mid-write) parsed as a whole row with NaN for the rest: a
    point that never landed was shown with a wrong median. It is left out, and said so."""
    run_dir = make_run(tmp_path, {"A": [10, 11, 12, 13]}, VALUES, n=10, telemetry=False)
    path = run_dir / "points.csv"
    whole = path.read_text()
    last = whole.rstrip("\n").rsplit("\n", 1)[1]
    cut = last[: last.index(",ok,") + 8]  # through status and into n / the median
    path.write_text(whole[: whole.rstrip("\n").rfind("\n") + 1] + cut)
    run = analysis.load_run(run_dir)
    assert len(run.points) == len(pd.read_csv(io.StringIO(whole))) - 1
    assert "points.csv: its last line was cut short and is left out" in run.notes


def test_a_line_cut_inside_a_quoted_field_loses_that_line_only(tmp_path) -> None:
    """A SIGKILL inside samples.csv's quoted ``info`` left a quote open to the end of the file, and pandas
    refused the whole file: every sample of the run was gone from its report."""
    run_dir = make_run(tmp_path, {"A": [10, 11, 12, 13]}, VALUES, n=10, telemetry=False)
    path = run_dir / "samples.csv"
    whole = path.read_text()
    path.write_text(whole + '0,count,3,3,512,approxnet,0,A,timed,10,0,0,12.5,600,9.9,1,A,,0,0,-1,4e5,"{""pr')
    run = analysis.load_run(run_dir)
    assert len(run.samples) == len(pd.read_csv(io.StringIO(whole)))
    assert "samples.csv: its last line was cut short and is left out" in run.notes
    assert analysis.summarise(run)["n"].tolist() == [10, 10, 10, 10]
    assert "damaged" not in {r.code for r in validity.check(run).reasons}


def test_missing_manifest_is_noted_not_fatal(tmp_path) -> None:
    run_dir = make_run(tmp_path, {"A": [10, 11]}, [0, 1])
    (run_dir / "manifest.json").unlink()
    run = analysis.load_run(run_dir)
    assert "manifest.json is missing" in run.notes
    assert run.axis == "count" and run.settings == ["A"]
    assert len(analysis.summarise(run)) == 2


# -- what is running at each point: the count on a size sweep, a set of kinds on a count sweep ---------------------

SIZES = [64, 128, 256, 512, 1024]
#: A ``bubbles:`` set as the effective scenario records it: a memory bubble and a cpu bubble, started together.
MEMORY_AND_CPU = [
    {"kind": "memory", "size_mb": 32, "cpu_duty": 0.0, "pattern": "none"},
    {"kind": "cpu", "size_mb": 0, "cpu_duty": 1.0, "pattern": "none"},
]


def _blank_bubble_columns(run_dir: Path, *names: str) -> None:
    """Rows that do not say what ran (the case in which the analysis must fall back on the scenario)."""
    for name in names:
        frame = pd.read_csv(run_dir / name)
        frame["bubble_count"] = math.nan
        frame["bubble_size_mb"] = math.nan
        frame.to_csv(run_dir / name, index=False)


@pytest.mark.parametrize("state", ["interrupted before 1024 MiB", "no point written yet", "rows without counts"])
def test_size_sweep_says_its_count_from_the_scenario(tmp_path: Path, state: str) -> None:
    """``sweep.count: 2`` on a size sweep: every point runs 2 bubbles, and the summary, the x axis and the cliff
    say so, also for a planned size with no row in points.csv and when no row tells the count."""
    interrupted = state == "interrupted before 1024 MiB"
    run_dir = make_run(tmp_path, {"HH": [10, 10.2, 10.4, 10.6, 30]}, SIZES, axis="size_mb", bubble_count=2,
                       missing=[(0, 1024)] if interrupted else [], status="interrupted")  # fmt: skip
    if not interrupted:
        (run_dir / "points.csv").write_text(",".join(POINT_COLUMNS) + "\n")  # killed while writing its first point
    if state == "rows without counts":
        _blank_bubble_columns(run_dir, "samples.csv")
    run = analysis.load_run(run_dir)
    assert run.sweep_count == 2 and 1024.0 in run.values
    s = analysis.summarise(run)
    measured = SIZES[:-1] if interrupted else SIZES
    assert s["bubble_count"].tolist() == [2.0] * len(measured), s
    assert s["bubble_size_mb"].tolist() == measured
    assert figures.axis_label(run) == "bubble size (MiB), 2 bubbles"
    (cliff,) = analysis.find_cliffs(run, s)
    assert cliff.fixed == 2
    words = "HH shows no cliff up to 2 bubbles of 512 MiB;" if interrupted else "HH tolerates 2 bubbles of 512 MiB;"
    assert cliff.sentence().startswith(words), cliff.sentence()


@pytest.mark.parametrize("counts_in_rows", [True, False], ids=["rows say", "scenario says"])
def test_a_set_of_kinds_on_a_count_sweep_is_counted_and_described_as_sets(tmp_path: Path, counts_in_rows: bool) -> None:
    """``bubbles: [memory 32 MiB, cpu]`` swept by count: value 2 is two sets, four bubbles, the largest 32 MiB."""
    run_dir = make_run(tmp_path, {"LL": [10, 10.5, 11, 30]}, [0, 1, 2, 3], bubbles=MEMORY_AND_CPU)
    if not counts_in_rows:
        _blank_bubble_columns(run_dir, "points.csv", "samples.csv")
    run = analysis.load_run(run_dir)
    assert run.bubble == {} and run.fixed_size_mb == 32
    s = analysis.summarise(run)
    assert s["bubble_count"].tolist() == [0, 2, 4, 6], s  # bubbles running, as the orchestrator records them
    assert s["bubble_size_mb"].tolist() == [32] * 4
    assert figures.axis_label(run) == "bubble sets running (2 bubbles each, largest 32 MiB)"
    (cliff,) = analysis.find_cliffs(run, s)
    assert (cliff.kind, cliff.at, cliff.tolerated) == ("break", 3, 2)
    words = cliff.sentence()
    assert words.startswith("LL tolerates 2 bubble sets (4 bubbles, largest 32 MiB); its latency (IQM) rises "), words
    assert "its latency with no bubbles" in words


def test_a_fall_and_a_recommendation_on_a_set_sweep_count_sets(tmp_path: Path) -> None:
    """Every sentence that names a level of a ``bubbles:`` count sweep says sets, as the cliff does: the
    sawtooth's fall and the SLO table's last line once said "2 bubbles" where 2 sets (4 bubbles) ran."""
    run_dir = make_run(tmp_path, {"LL": [10, 30, 12, 40]}, [0, 1, 2, 3], repeats=2, n=30, noise=0.02,
                       bubbles=MEMORY_AND_CPU, accuracy={"LL": 0.9})  # fmt: skip
    run = analysis.load_run(run_dir)
    (fall,) = monotone.falls_in(run)
    assert (fall.high_value, fall.low_value) == (1.0, 2.0)
    assert " at 1 bubble set but " in fall.sentence(), fall.sentence()
    lines = tradeoff.recommend(run, analysis.summarise(run), slo_ms=1000.0).lines()
    assert lines[-1].endswith("(up to 3 bubble sets)."), lines[-1]


def test_a_set_of_kinds_on_a_size_sweep_counts_sets_and_bubbles(tmp_path: Path) -> None:
    """``sweep.count: 2`` of [memory, cpu] swept by size: 4 bubbles per point, of which 2 hold the swept region."""
    run_dir = make_run(tmp_path, {"LL": [10, 10.5, 11, 30]}, SIZES[:4], axis="size_mb", bubble_count=2,
                       bubbles=MEMORY_AND_CPU)  # fmt: skip
    run = analysis.load_run(run_dir)
    assert run.sweep_count == 4
    s = analysis.summarise(run)
    assert s["bubble_count"].tolist() == [4] * 4 and s["bubble_size_mb"].tolist() == SIZES[:4]
    assert figures.axis_label(run) == "bubble size (MiB), 4 bubbles"
    (cliff,) = analysis.find_cliffs(run, s)
    assert cliff.sentence().startswith("LL tolerates 2 bubble sets at 256 MiB (4 bubbles); its latency (IQM) rises ")
