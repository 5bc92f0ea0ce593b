"""The cliff detector on synthetic curves with known answers, with sample-level noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from fixtures_runs import make_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bubbleup import analysis
from bubbleup.analysis.cliff import BREAK, NO_DATA, NON_FUNCTIONAL, NONE, CurvePoint, detect

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others


def curve(
    medians: Sequence[float | None],
    values: Sequence[float] | None = None,
    *,
    n: int = 40,
    noise: float = 0.08,
    repeats: int = 2,
    seed: int = 0,
    status: str = "failed",
) -> list[CurvePoint]:
    """CurvePoints with lognormal samples around the given true medians; None marks a point that failed."""
    rng = np.random.default_rng(seed)
    values = list(range(len(medians))) if values is None else list(values)
    points = []
    for v, m in zip(values, medians, strict=True):
        if m is None:
            points.append(
                CurvePoint(value=float(v), samples=np.array([]), functional=False, status=status, error="OOM")
            )
            continue
        by_rep = {r: m * np.exp(rng.normal(0.0, noise, n)) for r in range(repeats)}
        points.append(CurvePoint(value=float(v), samples=np.concatenate(list(by_rep.values())), by_repeat=by_rep))
    return points


def test_flat_then_step_finds_the_step() -> None:
    c = detect("HH", "count", curve([10, 10.2, 10.4, 40, 41, 42]), fixed=512)
    assert (c.kind, c.at, c.tolerated) == (BREAK, 3, 2)
    assert 3.5 < c.jump < 4.5
    assert c.jump_low > 1.2 and c.jump_low < c.jump < c.jump_high
    assert c.sentence().startswith("HH tolerates 2 bubbles of 512 MiB; its latency (IQM) rises ")
    assert " at 3 " in c.sentence()


@pytest.mark.parametrize(
    "medians",
    [
        [10, 15, 20, 25, 30, 35],  # 10 + 5v
        [10, 20, 30, 40, 50, 60],  # 10 + 10v: a 2x first step, but a straight line
        [7.8, 12.8, 19.8, 22.6, 30.3, 32.2],  # the small CNN beside 0..5 CPU bubbles on 2 cores (measured here)
    ],
)
def test_straight_line_has_no_cliff(medians: list[float]) -> None:
    c = detect("s", "count", curve(medians, noise=0.05))
    assert c.kind == NONE
    assert c.at is None and c.tolerated is None
    assert c.measured_max == 5
    assert c.slowdown == pytest.approx(medians[-1] / medians[0], rel=0.1)


@pytest.mark.parametrize("seed", range(8))
def test_noisy_flat_has_no_cliff(seed: int) -> None:
    c = detect("s", "count", curve([20] * 8, n=30, noise=0.3, seed=seed))
    assert c.kind == NONE, c.note


def test_exponential_growth_cliff_where_the_slope_jumps() -> None:
    medians = [10, 10.3, 10.5, 10.8] + [10.8 * 1.6**k for k in range(1, 5)]
    c = detect("s", "count", curve(medians))
    assert (c.kind, c.at, c.tolerated) == (BREAK, 4, 3)


def test_constant_ratio_growth_is_gradual() -> None:
    """Documented consequence of judging on log latency: a steady 1.6x per bubble has no break point."""
    c = detect("s", "count", curve([10 * 1.6**k for k in range(7)], noise=0.05))
    assert c.kind == NONE


def test_cliff_at_the_last_point() -> None:
    c = detect("s", "count", curve([10, 10.5, 11, 11.4, 12, 30]))
    assert (c.kind, c.at, c.tolerated) == (BREAK, 5, 4)


def test_level_jump_at_the_first_bubble() -> None:
    c = detect("s", "count", curve([10, 25, 25.5, 26, 26.5]))
    assert (c.kind, c.at, c.tolerated) == (BREAK, 1, 0)
    assert c.sentence().startswith("s tolerates no bubbles;")


def test_non_functional_point_is_the_cliff() -> None:
    c = detect("s", "count", curve([10, 10.5, 11, None, None], status="timeout"))
    assert (c.kind, c.at, c.tolerated, c.first_failure) == (NON_FUNCTIONAL, 3, 2, 3)
    assert c.status == "timeout" and c.error == "OOM"
    assert "at 3 it stops working (timeout: OOM)" in c.sentence()


def test_failure_at_the_lowest_pressure() -> None:
    c = detect("s", "count", curve([None, None]))
    assert (c.kind, c.at, c.tolerated) == (NON_FUNCTIONAL, 0, None)
    assert "does not work even at 0" in c.sentence()


def test_break_before_failure_wins_and_failure_is_recorded() -> None:
    c = detect("s", "count", curve([10, 10, 30, 31, None]))
    assert (c.kind, c.at, c.first_failure) == (BREAK, 2, 4)
    assert "non-functional from 4" in c.note


def test_jump_below_minimum_effect_is_not_a_cliff() -> None:
    """A 15% step is real (tiny noise, many samples) but below the 20% minimum effect."""
    c = detect("s", "count", curve([10, 10, 10, 11.5, 11.5, 11.5], n=400, noise=0.02))
    assert c.kind == NONE
    assert "below the 1.2x minimum" in c.note


def test_a_jump_in_one_repeat_only_is_not_a_cliff() -> None:
    rng = np.random.default_rng(3)
    pts = curve([10, 10, 10], repeats=2)
    drifted = {0: 10 * np.exp(rng.normal(0, 0.05, 40)), 1: 40 * np.exp(rng.normal(0, 0.05, 40))}
    pts.append(CurvePoint(value=3.0, samples=np.concatenate(list(drifted.values())), by_repeat=drifted))
    c = detect("s", "count", pts)
    assert c.kind == NONE
    assert "not seen in repeat 1" in c.note


def test_a_transient_spike_is_not_a_cliff() -> None:
    """More pressure does not remove contention: a jump that is gone at the next point was interference."""
    c = detect("s", "count", curve([10, 10, 25, 10.2, 10.4]))
    assert c.kind == NONE
    assert "not sustained" in c.note
    kept = detect("s", "count", curve([10, 10, 25, 20, 22]))  # keeps more than half the jump: a cliff
    assert (kept.kind, kept.at) == (BREAK, 2)


def test_climbing_back_out_of_a_dip_is_not_a_cliff() -> None:
    """A rise that ends no slower than unloaded service is recovery from a dip, not a fall off a cliff."""
    c = detect("s", "count", curve([10, 10.5, 6, 6.1, 8.5, 8.6], noise=0.03))
    assert c.kind == NONE
    assert "the latency at the least pressure" in c.note
    fell = detect("s", "count", curve([10, 10.5, 6, 6.1, 14, 14.5], noise=0.03))  # same shape, ends 1.4x worse
    assert (fell.kind, fell.at) == (BREAK, 4)


def test_too_few_samples_cannot_make_a_cliff() -> None:
    c = detect("s", "count", curve([10, 10, 40], n=1, repeats=1))
    assert c.kind == NONE
    assert "too few samples" in c.note


def test_size_axis_with_doubling_values() -> None:
    sizes = [64, 128, 256, 512, 1024, 2048]
    linear = detect("s", "size_mb", curve([10 + 0.01 * s for s in sizes], sizes, noise=0.03))
    assert linear.kind == NONE
    step = detect("s", "size_mb", curve([10, 10.1, 10.3, 10.5, 35, 60], sizes), fixed=1)
    assert (step.kind, step.at, step.tolerated) == (BREAK, 1024, 512)
    assert step.sentence().startswith("s tolerates a 512 MiB bubble;")
    assert "at 1024 MiB" in step.sentence()


def test_points_in_any_order_and_no_data() -> None:
    pts = curve([10, 10, 10, 40])
    assert detect("s", "count", list(reversed(pts))).at == 3
    assert detect("s", "count", []).kind == NO_DATA


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scale=st.floats(min_value=0.01, max_value=1000.0),
    step_at=st.integers(min_value=1, max_value=5),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_answer_is_scale_invariant(scale: float, step_at: int, seed: int) -> None:
    """Milliseconds or seconds, fast machine or slow: the same curve shape has the same cliff."""
    medians = [10.0] * step_at + [35.0] * (6 - step_at)
    base = curve(medians, seed=seed)
    scaled = [CurvePoint(p.value, p.samples * scale, {r: x * scale for r, x in p.by_repeat.items()}) for p in base]
    a, b = detect("s", "count", base), detect("s", "count", scaled)
    assert (a.kind, a.at) == (BREAK, step_at)
    assert (b.kind, b.at) == (a.kind, a.at)
    assert b.jump == pytest.approx(a.jump)


def test_find_cliffs_on_a_run_directory(tmp_path) -> None:
    run_dir = make_run(
        tmp_path,
        {"LL": [10, 10.5, 11, 11.4, 30, 41], "MM": [14, 15, 16, 17, 18, 19], "HH": [20, 21, 23, 24, 25, 26]},
        [0, 1, 2, 3, 4, 5],
        repeats=2,
        failed={("HH", 5): "failed"},
    )
    cliffs = {c.setting: c for c in analysis.find_cliffs(analysis.load_run(run_dir))}
    assert list(cliffs) == ["LL", "MM", "HH"]
    assert (cliffs["LL"].kind, cliffs["LL"].at, cliffs["LL"].tolerated) == (BREAK, 4, 3)
    assert cliffs["MM"].kind == NONE
    assert (cliffs["HH"].kind, cliffs["HH"].at, cliffs["HH"].tolerated) == (NON_FUNCTIONAL, 5, 4)
    assert cliffs["LL"].sentence().startswith("LL tolerates 3 bubbles of 512 MiB; its latency (IQM) rises 2.")
    frame = analysis.cliffs_frame(list(cliffs.values()))
    assert list(frame["kind"]) == [BREAK, NONE, NON_FUNCTIONAL]
