"""Resampled cliff verdicts on synthetic curves with known answers, and where the report and the CLI show them."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from fixtures_runs import make_run
from scipy import stats as scipy_stats

from bubbleup import analysis
from bubbleup.analysis import confidence, monotone
from bubbleup.analysis.cliff import BREAK, NONE, Cliff, CurvePoint, detect
from bubbleup.analysis.confidence import Verdicts, curve_verdicts, middle, resample_locations
from bubbleup.report import html as report

#: ApproxNet HH beside 0..6 own-session bubbles (README "Results you can trust"): a sawtooth.
SAWTOOTH = [8.8, 13.7, 12.2, 29.7, 24.6, 45.0, 23.9]


def curve(
    medians: Sequence[float | None], *, n: int = 30, repeats: int = 2, noise: float = 0.08, seed: int = 0
) -> list[CurvePoint]:
    """Points 0, 1, 2... with ``repeats`` x ``n`` lognormal samples around each true median; None: a failed point."""
    rng = np.random.default_rng(seed)
    out = []
    for v, m in enumerate(medians):
        if m is None:
            out.append(CurvePoint(float(v), np.array([]), functional=False, status="failed", error="OOM"))
            continue
        by_rep = {r: m * np.exp(rng.normal(0.0, noise, n)) for r in range(repeats)}
        out.append(CurvePoint(float(v), np.concatenate(list(by_rep.values())), by_repeat=by_rep))
    return out


def test_a_clear_cliff_is_found_in_nearly_every_resample() -> None:
    v = curve_verdicts("HH", "count", curve([10, 10.4, 10.8, 16, 16.5, 17]))
    assert v.share(3.0) >= 0.9 and v.modal == 3.0
    assert v.n_resamples == 1000 and sum(v.shares.values()) == pytest.approx(1.0)
    assert v.sentence().startswith("HH: cliff at 3 bubbles (")


def test_a_straight_line_is_no_cliff_in_nearly_every_resample() -> None:
    v = curve_verdicts("LL", "count", curve([10, 15, 20, 25, 30, 35, 40]))
    assert v.share(None) >= 0.9 and v.modal is None
    assert v.sentence().startswith("LL: no cliff (")


def test_a_borderline_step_splits_the_resamples() -> None:
    """A 1.2x step (exactly the minimum jump): neither answer is sure, and the sentence names both."""
    v = curve_verdicts("MM", "count", curve([10, 10, 10, 12, 12, 12], seed=2))
    assert sum(v.shares.values()) == pytest.approx(1.0)
    assert v.modal_share == max(v.shares.values()) == v.shares[v.modal]
    assert list(v.shares) == sorted(v.shares, key=lambda loc: -v.shares[loc])  # most frequent first
    assert v.share(None) >= 0.1 and v.share(3.0) >= 0.1, v.shares
    assert "no cliff" in v.sentence() and "cliff at 3" in v.sentence()


@pytest.mark.parametrize("medians", [[10, 10.5, 11, None], [10, 10.5, 11, None, 30], [None, 10, 11]])
def test_a_non_functional_point_is_the_cliff_in_every_resample(medians: list[float | None]) -> None:
    at = float(medians.index(None))
    v = curve_verdicts("s", "count", curve(medians))
    assert v.shares == {at: 1.0} and v.failure == at
    assert v.sentence() == f"s: stops working at {int(at)} bubble{'' if at == 1 else 's'} (100% of resamples)."


def test_a_break_before_a_failure_wins_over_it() -> None:
    v = curve_verdicts("s", "count", curve([10, 10.2, 30, 31, None]))
    assert v.modal == 2.0 and v.share(2.0) >= 0.9 and v.failure == 4.0
    assert v.share(None) == 0  # the failure is always there behind the break: never "no cliff"


def test_repeats_of_unequal_size_or_missing_at_a_point_are_resampled_as_they_are() -> None:
    """Sampling by precision stops each repeat at its own count; an interrupted run misses repeats at some points."""
    rng = np.random.default_rng(4)
    points = []
    for v, m in enumerate([10, 10.4, 10.8, 16, 16.5, 17]):
        sizes = {0: 12, 1: 57, 2: 30} if v != 4 else {0: 20}  # at 4 only repeat 0 ran
        by_rep = {r: m * np.exp(rng.normal(0.0, 0.08, n)) for r, n in sizes.items()}
        points.append(CurvePoint(float(v), np.concatenate(list(by_rep.values())), by_repeat=by_rep))
    v = curve_verdicts("s", "count", points)
    assert sum(v.shares.values()) == pytest.approx(1.0) and v.modal == 3.0 and v.share(3.0) >= 0.9
    assert detect("s", "count", points).at == 3.0


def test_same_seed_same_distribution_and_the_seed_matters(tmp_path: Path) -> None:
    points = curve([10, 10, 10, 12, 12, 12], seed=2)
    a, b = (resample_locations(points, seed=0) for _ in range(2))
    assert np.array_equal(a, b, equal_nan=True)
    assert not np.array_equal(a, resample_locations(points, seed=1), equal_nan=True)
    run = analysis.load_run(make_run(tmp_path, {"LL": [10, 10, 10, 12, 12, 12], "HH": [9, 9, 20, 21, 22, 23]},
                                     list(range(6)), repeats=2, n=30))  # fmt: skip
    assert analysis.verdicts(run) == analysis.verdicts(run)


def test_one_drifted_repeat_does_not_make_a_likely_cliff(tmp_path: Path) -> None:
    """Repeats are resampled as units: a jump seen in one of two repeats is a cliff only when that repeat is
    drawn twice, so "no cliff" stays the modal verdict (resampling samples alone would make it look certain)."""
    drift = {(1, "D", v): 3.0 for v in (3.0, 4.0, 5.0)}
    run = analysis.load_run(make_run(tmp_path, {"D": [10, 10.3, 10.6, 10.9, 11.2, 11.5]}, list(range(6)),
                                     repeats=2, n=30, repeat_scale=drift))  # fmt: skip
    (cliff,) = analysis.find_cliffs(run)
    (v,) = analysis.verdicts(run)
    assert cliff.kind == NONE and v.modal is None
    assert 0.1 <= v.share(3.0) <= 0.4, v.shares  # about the chance of drawing the drifted repeat twice


def test_verdicts_follow_find_cliffs_on_a_run(tmp_path: Path) -> None:
    curves = {"LL": [10, 10.5, 11, 11.4, 30, 41], "MM": [14, 15, 16, 17, 18, 19], "HH": [20, 21, 23, 24, 25, 26]}
    run = analysis.load_run(make_run(tmp_path, curves, list(range(6)), repeats=2, failed={("HH", 5): "failed"}))
    cliffs, verdicts = analysis.find_cliffs(run), analysis.verdicts(run)
    assert [v.setting for v in verdicts] == [c.setting for c in cliffs] == list(curves)
    assert all(confidence.agrees(c, v) for c, v in zip(cliffs, verdicts, strict=True))
    assert [v.modal for v in verdicts] == [4.0, None, 5.0]
    assert verdicts[2].sentence() == "HH: stops working at 5 bubbles (100% of resamples)."


def test_a_size_sweep_and_sets_of_kinds_are_worded_by_their_axis() -> None:
    points = [CurvePoint(p.value * 512, p.samples, p.by_repeat) for p in curve([10, 10.2, 30, 31])]
    assert curve_verdicts("s", "size_mb", points).sentence().startswith("s: cliff at 1024 MiB (")
    sets = curve_verdicts("s", "count", curve([10, 30, 31, 32]), set_size=2)
    assert sets.sentence().startswith("s: cliff at 1 bubble set (")


def test_disagreement_shows_both_verdicts() -> None:
    cliff = Cliff("LL", "count", BREAK, at=2.0, tolerated=1.0)
    v = Verdicts("LL", {None: 0.55, 2.0: 0.45}, None, 0.55, 1000)
    assert not confidence.agrees(cliff, v)
    assert confidence.beside(cliff, v) == (
        "Detector: cliff at 2 bubbles; resamples: no cliff in 55%; cliff at 2 in 45%. "
        "They disagree: read this verdict as uncertain."
    )
    agree = Verdicts("HH", {1.0: 0.94, 2.0: 0.06}, 1.0, 0.94, 1000)
    assert agree.sentence() == "HH: cliff at 1 bubble (94% of resamples; 2 in 6%)."
    words = confidence.beside(Cliff("HH", "count", BREAK, at=1.0), agree)
    assert words == "Resamples: cliff at 1 bubble in 94%; 2 in 6%."
    assert [confidence.percent(x) for x in (1.0, 0.999, 0.5, 0.004, 0.0)] == ["100%", ">99%", "50%", "<1%", "0%"]


def test_levels_of_ranks_are_the_levels_of_the_draws() -> None:
    rng = np.random.default_rng(1)
    for n, per_row in [(1, 1), (2, 2), (5, 5), (7, 14), (31, 62), (400, 400)]:
        ascending = np.sort(np.round(rng.lognormal(size=n), 1))  # rounded: ties, as a coarse timer gives
        positions = np.sort(rng.integers(0, n, size=(50, per_row)), axis=1)
        expected = scipy_stats.trim_mean(ascending[positions], 0.25, axis=1)  # the IQM, as analysis.stats.iqm
        assert np.allclose(middle(ascending, positions), expected)


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_a_sawtooth_is_said_in_words_in_the_report_and_on_the_command_line(tmp_path: Path) -> None:
    curves = {"HH": SAWTOOTH, "LL": [10, 10.5, 11, 11.5, 12, 12.5, 13]}
    run_dir = make_run(tmp_path, curves, list(range(7)), repeats=2, n=30)
    run = analysis.load_run(run_dir)
    (fall,) = monotone.falls(analysis.summarise(run))
    assert (fall.setting, fall.high_value, fall.low_value) == ("HH", 5.0, 6.0)
    written = report.write(run_dir)
    text = written.path.read_text()
    for v in analysis.verdicts(run):
        cliff = next(c for c in analysis.find_cliffs(run) if c.setting == v.setting)
        assert html.escape(confidence.beside(cliff, v)) in text
    verdicts = text.split('<ul class="verdicts all">')[1].split("</ul>")[0]  # each setting in words
    assert html.escape(fall.sentence()) in verdicts
    assert f"  {fall.sentence()}." in written.verdicts  # what the CLI prints, under HH's verdict
    assert "LL is not monotone" not in text


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_the_cli_report_prints_each_verdict_with_its_confidence(tmp_path: Path) -> None:
    from conftest import run_cli

    run_dir = make_run(tmp_path, {"HH": SAWTOOTH}, list(range(7)), repeats=2, n=30, telemetry=False)
    done = run_cli(["report", str(run_dir)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["setting", "verdict", "rise", "at", "the", "cliff", "[95%", "CI]", "resamples"]
    assert re.fullmatch(r"HH +cliff at 1 bubble +1\.\d\dx \[1\.\d\dx, 1\.\d\dx\] +cliff at 1 \(100%\)", lines[1])
    assert lines[2].startswith("  HH is not monotone: ")  # verdicts first, then how the CPU's speed moved
    assert lines[3].startswith("The CPU's speed probe ranged 1.00-1.00x") and lines[4].startswith("report: ")
    # read through `| head -1`: the closed pipe ends the command quietly, no BrokenPipeError traceback
    piped = subprocess.run(f"{sys.executable} -m bubbleup report {run_dir} | head -1", shell=True, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert piped.stdout.startswith("setting") and "Traceback" not in piped.stderr, piped.stderr


def test_tiny_falls_are_not_flagged(tmp_path: Path) -> None:
    """With 400 samples per point a 2% fall lies beyond both CIs; it is below the 5% minimum."""
    run = analysis.load_run(make_run(tmp_path, {"A": [10, 10.2, 10.1, 10.3, 10.15, 10.4]}, list(range(6)),
                                     repeats=2, n=200, noise=0.05))  # fmt: skip
    summary = analysis.summarise(run)
    assert monotone.falls(summary, min_ratio=1.0) != []
    assert monotone.falls(summary) == []


def test_verdicts_cost_a_few_find_cliffs(tmp_path: Path) -> None:
    """12 settings x 7 points x 2 repeats x 30 samples: 1000 resamples of every curve against one point
    detector pass on the same summary (timed alike, best of three, so the machine's load cancels)."""
    rng = np.random.default_rng(0)
    curves = {}
    for i in range(12):
        base = 10 * np.cumprod(np.r_[1, rng.uniform(1.0, 1.15, 6)])
        base[1 + i % 6 :] *= 1.0 if i % 3 == 0 else rng.uniform(1.3, 2.5)
        curves[f"s{i}"] = list(base)
    run = analysis.load_run(make_run(tmp_path, curves, list(range(7)), repeats=2, n=30, telemetry=False))
    summary = analysis.summarise(run)

    def best(f: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    point = best(lambda: analysis.find_cliffs(run, summary))
    resampled = best(lambda: analysis.verdicts(run, summary))
    assert resampled < 4 * point, (resampled, point)


def test_a_fall_within_the_runs_repeat_to_repeat_noise_is_not_flagged(tmp_path: Path) -> None:
    """Each point's CI pools its samples as if independent; when repeats of the same point differ by 15%
    (the machine wandered), a 12% fall between pooled medians is not evidence, though beyond both CIs.
    The same fall with repeats that agree is flagged, and says the noise it exceeded."""
    drift = {(0, "A", 0.0): 1.15, (1, "A", 1.0): 1.15}
    noisy = analysis.summarise(analysis.load_run(make_run(tmp_path / "noisy", {"A": [10, 8.8]}, [0, 1], repeats=2,
                                                          n=200, noise=0.05, repeat_scale=drift)))  # fmt: skip
    hi, lo = noisy.iloc[0], noisy.iloc[1]
    assert lo.ci_high_ms < hi.ci_low_ms and hi.median_ms / lo.median_ms > monotone.MIN_FALL  # beyond both CIs
    noise = monotone.repeat_noise(noisy)
    assert noise is not None and noise.df == 2 and noise.sd > 0.08
    assert monotone.falls(noisy) == []
    steady = analysis.summarise(analysis.load_run(make_run(tmp_path / "steady", {"A": [10, 8.8]}, [0, 1],
                                                           repeats=2, n=200, noise=0.05)))  # fmt: skip
    (fall,) = monotone.falls(steady)
    assert fall.noise_sd < 0.02 and "repeat-to-repeat noise of this run" in fall.sentence()
    single = analysis.summarise(analysis.load_run(make_run(tmp_path / "single", {"A": [10, 8.8]}, [0, 1],
                                                           repeats=1, n=400, noise=0.05)))  # fmt: skip
    assert monotone.repeat_noise(single) is None and len(monotone.falls(single)) == 1  # judged by the CIs alone
