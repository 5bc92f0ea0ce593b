"""The CPU speed probe: what it sees (the CPU's own speed) and what it must not (time-sharing), and how analysis
uses it: compare at one speed, verdicts at one speed unless the speed follows the pressure."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until
from fixtures_runs import make_run

from bubbleup.analysis import compare, monotone, speed, validity
from bubbleup.analysis.summary import find_cliffs, summarise
from bubbleup.machine import speed as probe
from bubbleup.report.compare import render
from bubbleup.store.reader import load_run
from bubbleup.sweep.worker import Runner, load_workload

VALUES = [0, 1, 2, 3, 4]


def test_compare_at_one_speed_sees_a_slower_workload_not_a_slower_cpu(tmp_path: Path) -> None:
    flat = {"a": [10, 11, 12, 13, 14], "b": [20, 21, 22, 23, 24]}
    a = load_run(make_run(tmp_path, flat, VALUES, repeats=3, name="a", seed=1))
    # B: the same workload on a CPU 20% slower throughout (latency and probe alike)
    slow_cpu = {(r, v): 1.2 for r in range(3) for v in VALUES}
    b_cpu = load_run(make_run(tmp_path, flat, VALUES, repeats=3, name="b-cpu", seed=2, slow_cpu=slow_cpu))
    # C: a workload 20% slower on a CPU of A's speed
    c_code = load_run(make_run(tmp_path, {k: [1.2 * x for x in v] for k, v in flat.items()}, VALUES, repeats=3,
                               name="c-code", seed=3))  # fmt: skip
    # Probes of another interpreter or loop count other things: compared raw, and said so.
    other = make_run(tmp_path, flat, VALUES, repeats=3, name="b-other", seed=2, slow_cpu=slow_cpu)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["environment"]["speed_probe"] = {"loops": 8000, "python": "3.13.1"}
    (other / "manifest.json").write_text(json.dumps(manifest))
    raw = compare.compare_runs(a, load_run(other))
    assert not raw.one_speed and raw.flagged == 10 and any("do not count the same thing" in w for w in raw.warnings)
    cpu = compare.compare_runs(a, b_cpu)
    assert cpu.one_speed and cpu.flagged == 0, cpu.table
    assert cpu.table["speed_ratio"].to_numpy() == pytest.approx(1.2)
    assert cpu.table["median_b_ms"].to_numpy() / cpu.table["median_a_ms"].to_numpy() == pytest.approx(1.2, rel=0.05)
    code = compare.compare_runs(a, c_code)
    assert code.flagged == len(code.table) == 10 and (code.table["verdict"] == "B slower").all()
    # Without probes the slower CPU reads as a slower workload at every point, and compare says it cannot tell.
    a_old = load_run(make_run(tmp_path, flat, VALUES, repeats=3, name="a-old", seed=1, probe_ns=None))
    old = compare.compare_runs(a_old, b_cpu)
    assert not old.one_speed and old.flagged == 10 and any("no CPU speed probes" in w for w in old.warnings)


def test_a_slow_cpu_state_is_not_called_a_fall(tmp_path: Path) -> None:
    """A flat curve; the CPU ran 1.4x slower while the zero-pressure point was measured (both repeats), as at the
    start of a run on an idle VM: raw latencies show a fall with more pressure (an INVALID run); the probes show
    none. (The cliff-side twin, a slow state at the highest pressures in both interleaved repeats, is one
    stretch of time that looks exactly like a speed that follows the pressure, and is judged raw: next test.)"""
    flat = {"s": [10.0] * 5}
    slow = {(r, 0.0): 1.4 for r in range(2)}
    probed = load_run(make_run(tmp_path, flat, VALUES, repeats=2, name="probed", slow_cpu=slow, noise=0.02))
    blind = load_run(make_run(tmp_path, flat, VALUES, repeats=2, name="blind", slow_cpu=slow, noise=0.02,
                              probe_ns=None))  # fmt: skip
    assert speed.facts(probed).adjusts
    assert not monotone.falls_in(probed) and find_cliffs(probed)[0].location is None
    assert "non_monotone" not in {r.code for r in validity.check(probed).reasons}
    assert monotone.falls_in(blind) and "non_monotone" in {r.code for r in validity.check(blind).reasons}


def test_a_speed_that_follows_the_pressure_is_part_of_the_pressure(tmp_path: Path) -> None:
    """A governor or heat that slows the CPU 1.5x once the load passes a level: that is what the load does, so
    verdicts stay raw and the cliff it makes is reported."""
    slow = {(r, float(v)): 1.5 if v >= 3 else 1.0 for r in range(3) for v in VALUES}
    run = load_run(make_run(tmp_path, {"s": [10.0] * 5}, VALUES, repeats=3, slow_cpu=slow, noise=0.02))
    facts = speed.facts(run)
    assert facts.follows_pressure and not facts.adjusts and facts.rho > 0.8 and facts.p < 0.01
    assert "followed the pressure" in facts.sentence()
    assert speed.for_verdicts(run) is run and find_cliffs(run)[0].location == 3


def test_the_trend_test_knows_three_points_prove_little() -> None:
    rho, p = speed.rank_trend(np.array([0.0, 1, 2]), np.array([1.0, 2, 3]))
    assert rho == pytest.approx(1.0) and 0.25 < p < 0.45  # 2 of the 6 orders are as extreme
    rho, p = speed.rank_trend(np.repeat(np.arange(6.0), 3), np.repeat(np.arange(6.0), 3) + 0.1 * np.arange(18) % 1)
    assert rho > 0.9 and p < 0.01
    # what a run's shape allows at best: one repeat of five values can never reach 0.01, three of six easily
    assert speed.smallest_p(np.arange(5.0)) == pytest.approx(2 / 120)
    assert speed.smallest_p(np.repeat(np.arange(2.0), 2)) == pytest.approx(2 / 6)
    assert speed.smallest_p(np.repeat(np.arange(6.0), 3)) < 1e-9


def test_a_run_too_small_to_tell_is_judged_raw(tmp_path: Path) -> None:
    """One repeat of five values: even a speed that followed the pressure perfectly could not be told from chance
    (p >= 2/5!), so nothing is corrected, and the report says why."""
    slow = {(0, float(v)): 1.0 + 0.1 * v for v in VALUES}
    run = load_run(make_run(tmp_path, {"s": [10.0] * 5}, VALUES, slow_cpu=slow, noise=0.02))
    facts = speed.facts(run)
    assert facts.too_few == 5 and not facts.adjusts and speed.for_verdicts(run) is run
    assert "too few to tell" in facts.sentence()


def test_a_run_too_small_to_tell_calls_a_fall_only_when_both_readings_show_it(tmp_path: Path) -> None:
    """Two repeats of 0 and 1 bubbles (the validity test's tiny run, which once read INVALID on a quiet VM: the
    CPU ran 1.2-1.4x slower while both zero-pressure points were timed). Too few points to tell whether the
    speed followed the pressure, so neither reading alone may accuse the dial; a fall that the workload itself
    made (the probe steady) still counts."""
    values = [0, 1]
    slow = {(0, 0.0): 1.2, (1, 0.0): 1.4}
    cpu = load_run(make_run(tmp_path, {"s": [10.0, 10.0]}, values, repeats=2, name="cpu", slow_cpu=slow, noise=0.02))
    facts = speed.facts(cpu)
    assert facts.too_few == 4 and not facts.adjusts and "also there at one speed" in facts.sentence()
    assert monotone.falls(summarise(cpu))  # raw, the slow state reads as a fall ...
    assert not monotone.falls_in(cpu)  # ... that the probes explain
    assert "non_monotone" not in {r.code for r in validity.check(cpu).reasons}
    real = load_run(make_run(tmp_path, {"s": [13.0, 10.0]}, values, repeats=2, name="real", noise=0.02))
    assert [f.setting for f in monotone.falls_in(real)] == ["s"]
    assert "non_monotone" in {r.code for r in validity.check(real).reasons}


_SPINNER = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


def _wall_ns() -> float:
    """Wall time per loop over 50 loops in a row (~17 ms: several scheduler slices, so sharing shows)."""
    start = time.perf_counter_ns()
    for _ in range(50):
        probe._loop()
    return float(time.perf_counter_ns() - start) / 50


def test_the_probe_ignores_time_sharing_that_wall_time_sees() -> None:
    """A spinning process on the probe's own CPU halves the CPU the probe gets: timed by wall clock the same loop
    takes about twice as long, timed by the thread's CPU time (the probe) about as long. Windows alternate
    alone/shared, so the VM's own speed changes fall on both sides."""
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    ratios_probe, ratios_wall = [], []
    try:
        for _ in range(6):
            alone_p = statistics.median(probe.probe_ns() for _ in range(20))
            alone_w = statistics.median(_wall_ns() for _ in range(5))
            spinner = subprocess.Popen([sys.executable, "-c", _SPINNER, str(cpu)])
            try:
                proc_file = f"/proc/{spinner.pid}/stat"
                wait_until(lambda f=proc_file: int(open(f).read().split()[13]) > 5, 30, "the spinner to run")
                shared_p = statistics.median(probe.probe_ns() for _ in range(20))
                shared_w = statistics.median(_wall_ns() for _ in range(5))
            finally:
                spinner.kill()
                spinner.wait()
            ratios_probe.append(shared_p / alone_p)
            ratios_wall.append(shared_w / alone_w)
    finally:
        os.sched_setaffinity(0, before)
    assert statistics.median(ratios_wall) > 1.3, ratios_wall  # the loop really shared its CPU
    assert abs(statistics.median(ratios_probe) - 1) < 0.15, ratios_probe


def test_every_inference_carries_the_probe_taken_last_before_it() -> None:
    """A step of 0.45 s probes before its warm-ups, before its timed loop and again every 0.1 s between inferences:
    every record carries a probe, in runs of consecutive inferences (a new probe applies from the next inference
    on). Judged by the records' own clock, not by the 0.45 s: on a loaded VM one inference may stall for most of
    the step (in CI a step took only two probes), and then no probe is due inside it."""
    runner = Runner(load_workload("synthetic", {"working_sets_kb": [64], "rounds": 2}))
    runner.workload.load()
    result = runner.step("ws64k", 3, 10, seconds=0.45)
    records = [r for r in result.records if r.phase == "timed"]
    assert all(r.speed_ns > 0 for r in result.records)
    starts = [r.t_epoch_s - r.latency_ms / 1e3 for r in records]
    changes = [i for i in range(len(records)) if i == 0 or records[i - 1].speed_ns != records[i].speed_ns]
    runs = [records[i].speed_ns for i in changes]  # distinct probes in order of use
    every, slack = 0.1, 0.03  # the probe period; slack for the probe itself and two clocks
    for first, nxt in zip(changes, [*changes[1:], len(records)], strict=True):
        # within one probe's stretch the inferences before its last took less than a period of the worker's own
        # clock (else a new probe was due) ... Their latencies, not the records' wall-clock times: a CI run saw a
        # stretch span 0.35 s of wall clock (the VM's clock stepped, or two probes read the same ns)
        assert sum(r.latency_ms for r in records[first : nxt - 1]) / 1e3 < every + slack, (first, nxt)
        # ... and a new probe comes only once a period has passed since the last one
        if nxt < len(records):
            assert starts[nxt] - starts[first] > every - slack, (first, nxt)
    assert len(runs) >= 2 or starts[-1] - starts[0] < every  # 0.45 s of inferences: more than one probe
    assert len(set(runs)) == len(runs)  # each probe used for one stretch of inferences, never again later


def test_a_probe_scales_latency_only_as_far_as_latency_follows_it(tmp_path: Path) -> None:
    """The probe times a compute loop. Latency is scaled by it to the power of how far latency followed it between
    repeats (speed.elasticity). When the probe moves while the workload does not (what slowed the loop did not slow
    the workload), that is 0: verdicts and compare use raw latencies, and say why. When latency follows it in full,
    1; in part (another tenant's traffic slowing the loop more than the workload), in part, and the repeats then
    agree better than raw or scaled in full."""
    flat = {"a": [10, 11, 12, 13, 14], "b": [20, 21, 22, 23, 24]}
    noise = {(r, v): f for r in range(3) for v, f in zip(VALUES, (1.3, 0.8, 1.25, 0.85, 1.2)[r:] + (1.0,) * r,
                                                                  strict=False)}  # fmt: skip
    blind = load_run(make_run(tmp_path, flat, VALUES, repeats=3, name="blind", seed=1, probe_scale=noise))
    facts = speed.facts(blind)
    assert facts.elasticity.beta == 0 and facts.elasticity.told and not facts.adjusts
    assert "did not follow it" in facts.sentence() and speed.for_verdicts(blind) is blind
    again = load_run(make_run(tmp_path, flat, VALUES, repeats=3, name="again", seed=2))
    raw = compare.compare_runs(blind, again)
    assert not raw.one_speed and raw.beta == 0
    # compare says why it reads the runs as measured, and how far apart the probes put the two CPUs
    (said,) = [w for w in raw.warnings if "probe" in w]
    assert "fitted elasticity 0" in said and "compared as measured" in said, said
    assert re.search(r"B's CPU ran \d\.\d\dx A's time per loop", said), said
    tracking = load_run(make_run(tmp_path, flat, VALUES, repeats=3, name="tracking", seed=3, slow_cpu=noise))
    assert speed.facts(tracking).elasticity.beta >= 0.95
    full = compare.compare_runs(tracking, again)
    assert full.one_speed and full.beta >= 0.95 and not [w for w in full.warnings if "probe" in w]
    # latency follows the probe to the power 0.3: a probe moving 1.3x moves latency 1.3 ** 0.3 = 1.08x
    part = load_run(make_run(tmp_path, flat, VALUES, repeats=3, name="part", seed=4,
                             slow_cpu={k: f**0.3 for k, f in noise.items()},
                             probe_scale={k: f**0.7 for k, f in noise.items()}))  # fmt: skip
    e = speed.facts(part).elasticity
    assert 0.2 <= e.beta <= 0.4 and speed.facts(part).adjusts, e
    assert e.spread_scaled < e.spread_raw / 2
    assert e.spread_scaled < speed.repeat_spread(part.samples, 1.0)  # scaling in full overshoots
    assert f"to the power {e.beta:.2f}" in speed.facts(part).sentence()
    some = compare.compare_runs(part, again)
    assert some.one_speed and 0.1 <= some.beta <= 0.4 and some.flagged == 0, some.table
    (said,) = [w for w in some.warnings if "probe" in w]
    assert "only in part" in said, said
    # the text and the HTML say how far the inferences were scaled
    assert f"probe taken before it to the power {some.beta:.2f}" in compare.format_text(some)
    assert f"before it to the power {some.beta:.2f} to A's median speed" in render(some)
    assert "to the power" not in render(full) and "to the power" not in compare.format_text(full)
    # two repeats of two steps give two deviations from their means, too few to fit a slope (a test's tiny runs
    # once fitted 0.63 from two): such a run is scaled in full or not at all, whichever puts its repeats closer
    tiny_probe = {k: f for k, f in noise.items() if k[0] < 2 and k[1] < 2}
    tiny = load_run(make_run(tmp_path, {"a": [10, 11]}, [0, 1], repeats=2, name="tiny", seed=5,
                             slow_cpu={k: f**0.3 for k, f in tiny_probe.items()},
                             probe_scale={k: f**0.7 for k, f in tiny_probe.items()}))  # fmt: skip
    fit = speed.elasticity(tiny.samples)
    assert fit.beta in (0.0, 1.0) and fit.spread_scaled <= fit.spread_raw and not fit.fitted, fit
    assert e.fitted and facts.elasticity.fitted
    # a tiny run whose latency ignores its moving probe: 0, and the sentence does not claim a fitted slope
    deaf = load_run(make_run(tmp_path, {"a": flat["a"]}, VALUES, repeats=2, name="deaf", seed=6,
                             probe_scale={k: f for k, f in noise.items() if k[0] < 2}))  # fmt: skip
    e0 = speed.elasticity(deaf.samples)
    assert e0.beta == 0 and not e0.fitted, e0
    said = speed.facts(deaf).sentence()
    assert "too few repeats" in said and "fitted elasticity" not in said, said
