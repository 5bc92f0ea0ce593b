"""The run's verdict: every reason for INVALID is produced by a test that causes it, and a quiet run is VALID.

Real processes cause what only a real run can show (a busy machine, a bubble that lost its memory, a
budget's CPU quota throttling the run); fabricated run directories check the pure rules on exact numbers
(the duty rule's saturated/unsaturated cases, precision caps, falls, throttling counts, old runs).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import ROOT, run_cli, smoke_dict, write_scenario
from fixtures_runs import make_run

from bubbleup.analysis import validity
from bubbleup.machine.telemetry import CpuAccount, _process_busy_s, descendants
from bubbleup.store.reader import load_run
from bubbleup.store.records import BUBBLE_COLUMNS, OUTSIDE_CPU_CORES

PY = sys.executable


def codes(v: validity.Validity) -> list[str]:
    return [r.code for r in v.reasons]


def message(v: validity.Validity, code: str) -> str:
    return next(r.message for r in v.reasons if r.code == code)


def tiny(**overrides: Any) -> dict[str, Any]:
    """A seconds-long run: one small setting, 0 and 1 half-duty bubbles of 16 MiB, each bubble running long enough
    (>= 0.5 s) for its delivery to be judged."""
    # 2 MiB of working set, so that a streaming bubble slows it (a 64 KiB one ran faster beside a bubble on
    # this VM: a busy neighbour kept its CPU awake, and the dial fell).
    return smoke_dict(**{"workload.options": {"working_sets_kb": [2048], "rounds": 4},
                         "workload.inferences_per_setting": 60, "sweep.settle_s": 0.6, "telemetry.interval_s": 0.05,
                         "limits.start_check_s": 1.0, **overrides})  # fmt: skip


def run(tmp_path: Path, data: dict[str, Any], env: dict[str, str] | None = None) -> tuple[validity.Validity, Path]:
    out = tmp_path / "run"
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(out), "-q", "--no-report"], cwd=tmp_path,
                   env={**os.environ, **(env or {})})  # fmt: skip
    assert done.returncode == 0, done.stderr
    verdict = validity.Validity.from_dict(json.loads((out / "manifest.json").read_text())["validity"])
    assert done.stdout.splitlines() == verdict.lines()  # the CLI prints exactly the recorded verdict
    return verdict, out


# -- real processes ----------------------------------------------------------------------------------------


def _our_cpu_s() -> float:
    """CPU seconds of this test process and every child it has waited for (the run and everything it started)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def test_a_quiet_tiny_run_is_valid(tmp_path: Path) -> None:
    """The verdict must not cry wolf. On a shared machine others may really be busy, so the machine-busy
    reasons are cross-checked against an independent measure: the machine's process CPU over the whole
    run minus what this test and its (reaped) descendants used. Only when that shows someone else really
    used CPU does the test skip; a busy verdict on a machine that was quiet by that measure fails."""
    busy0, ours0 = _process_busy_s(), _our_cpu_s()
    # A memory-only bubble (no CPU) and four repeats: this 0.2 ms kernel's speed wanders between points with no
    # pressure at all (0.16-0.39 ms medians in 20 quiet runs), which the CIs of one point cannot see; the
    # repeats measure it, and the non-monotone test must not call a fall that lies within it
    # (analysis/monotone.py). Two repeats were too few: CI saw both 1-bubble points land 12% faster than
    # both 0-bubble points, each pair 1.9% apart, which two repeats cannot tell from a real fall.
    data = tiny(**{"bubble": {"kind": "memory", "size_mb": 16}, "workload.warmup": 300, "sweep.repeats": 4})
    verdict, _ = run(tmp_path, data)
    outside_s = (_process_busy_s() - busy0) - (_our_cpu_s() - ours0)
    if verdict.valid:
        return
    assert set(codes(verdict)) <= {"machine_busy", "machine_busy_start"}, verdict.lines()
    # The least a busy verdict can rest on: 0.25 cores over a point's middle samples (>= 0.6 s here) or the start check.
    if outside_s >= OUTSIDE_CPU_CORES * 0.3:
        pytest.skip(f"the machine was busy outside this test ({outside_s:.2f} CPU s): {verdict.lines()}")
    pytest.fail(f"INVALID on a machine that was quiet ({outside_s:.3f} CPU s outside the run): {verdict.lines()}")


def test_a_process_spinning_beside_the_run_makes_it_invalid(tmp_path: Path) -> None:
    spinner = subprocess.Popen([PY, "-c", "while True: pass"])
    try:
        verdict, out = run(tmp_path, tiny())
    finally:
        spinner.kill()
        spinner.wait()
    assert not verdict.valid
    assert {"machine_busy_start", "machine_busy"} <= set(codes(verdict)), verdict.lines()
    assert "processes outside the run used" in message(verdict, "machine_busy")
    assert "bubble_rss" not in codes(verdict)  # the bubbles themselves were fine
    telemetry = pd.read_csv(out / "telemetry.csv")
    assert telemetry["run_cpu_cores"].mean() > 0 and telemetry["outside_cpu_cores"].mean() > 0.25
    start = json.loads((out / "manifest.json").read_text())["machine_checks"]
    assert len(start) == 1 and start[0]["outside_cpu_cores"] > OUTSIDE_CPU_CORES
    assert start[0]["window_s"] >= 1.0  # limits.start_check_s, as tiny() sets it
    # and it names who: the spinner, by its PID (a user can act on that)
    assert any(b["pid"] == spinner.pid and b["cores"] > 0.25 for b in start[0]["busiest"]), start
    assert f"pid {spinner.pid}" in message(verdict, "machine_busy_start")
    # and during the points too, from each point's own census (manifest busy_points)
    assert f"pid {spinner.pid}" in message(verdict, "machine_busy"), message(verdict, "machine_busy")
    during = json.loads((out / "manifest.json").read_text())["busy_points"]
    assert during and all(any(b["pid"] == spinner.pid for b in p["busiest"]) for p in during), during


_BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\n"
#: Waits for a line, runs one child that burns 0.3 CPU s and ends (reaped), then one that burns 0.3 s,
#: says so and waits for end of input.
_PARENT = f"""
import subprocess, sys
sys.stdin.readline()
subprocess.run([sys.executable, "-c", {_BURN!r}], check=True)
subprocess.run([sys.executable, "-c", {_BURN!r} + "print('burnt', flush=True)\\nimport sys\\nsys.stdin.read()"])
"""


def test_the_runs_cpu_counts_processes_that_started_or_ended_between_samples() -> None:
    """A bubble that stopped, or a helper that ran and ended, between two samples is the run's CPU, not
    someone else's; so is a process that started just after a sample (its start time is not to be trusted)."""
    parent = subprocess.Popen([PY, "-c", _PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert parent.stdin is not None and parent.stdout is not None
    try:
        account = CpuAccount(lambda: [parent.pid])
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "burnt"
        elapsed = account.elapsed_s()
        run_cores, outside_cores = account.sample()
    finally:
        for pid in [*descendants(parent.pid), parent.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
    # Two children burnt 0.3 s each, one of them ended before the sample; all of it is the run's.
    assert run_cores * elapsed >= 0.55, (run_cores, outside_cores, elapsed)
    assert outside_cores * elapsed < 0.25, (run_cores, outside_cores, elapsed)


def test_a_bubble_that_gives_its_memory_back_is_invalid(tmp_path: Path) -> None:
    # Fault injection (bubbleup.pressure.kernel): each bubble releases its region 0.1 s after ready, and
    # says so; the run's own telemetry must catch it, not the bubble's word.
    verdict, out = run(tmp_path, tiny(**{"sweep.values": [1], "sweep.settle_s": 0.6}),
                       env={"BUBBLEUP_FAULT_RELEASE_AFTER_S": "0.1"})  # fmt: skip
    assert "bubble_rss" in codes(verdict), verdict.lines()
    text = message(verdict, "bubble_rss")
    assert "bubble 0" in text and "of 16 MiB" in text and "fault injected: region released 0.1 s after ready" in text
    bubbles = pd.read_csv(out / "bubbles.csv")
    assert list(bubbles.columns) == list(BUBBLE_COLUMNS) and len(bubbles) == 1
    b = bubbles.iloc[0]
    assert b["region_mb"] >= 0.97 * 16 and b["rss_samples"] > 0  # it was honestly resident at ready...
    assert b["region_min_mb"] < 0.5 * 16  # ...and the sampler saw it let go


def test_a_bubble_that_never_comes_up_is_invalid_not_the_workloads_cliff(tmp_path: Path) -> None:
    """A co-runner that exits at once: the pressure at 1 was never applied. The run says so (INVALID), and the
    point is left out of the curves instead of being read as the workload failing there."""
    from bubbleup.analysis.summary import find_cliffs, summarise

    bubble = {"kind": "command", "command": [PY, "-c", "raise SystemExit(3)"], "startup_s": 0.5}
    verdict, out = run(tmp_path, tiny(bubble=bubble))
    assert "pressure_failed" in codes(verdict), verdict.lines()
    assert "1 bubble (repeat 1)" in message(verdict, "pressure_failed")
    points = pd.read_csv(out / "points.csv")
    assert set(points.loc[points["value"] == 1, "status"]) == {"failed"} and set(points.loc[points["value"] == 0,
                                                                                              "status"]) == {"ok"}
    loaded = load_run(out)
    assert list(summarise(loaded)["value"]) == [0]
    assert all(not c.found for c in find_cliffs(loaded)), [c.sentence() for c in find_cliffs(loaded)]


def test_a_workload_that_fails_without_pressure_is_invalid(tmp_path: Path) -> None:
    """A command workload whose program fails every time: the run completes (a failure under pressure is data),
    but a setting that fails with no pressure has no baseline, and the run says so; a program that is not there
    at all is refused when the scenario is read."""
    data = tiny(workload={"kind": "command", "options": {"argv": ["false"]}, "inferences_per_setting": 3})
    verdict, _ = run(tmp_path, data)
    assert "baseline_failed" in codes(verdict), verdict.lines()
    assert "1 setting failed in every step with no pressure: default (failed)" in message(verdict, "baseline_failed")
    assert message(verdict, "baseline_failed").endswith("first error: RuntimeError: false exited with status 1")
    missing = tiny(workload={"kind": "command", "options": {"argv": ["/no/such/program", "{setting}"]}})
    done = run_cli(["validate", str(write_scenario(tmp_path, missing, "missing.yaml"))], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing.yaml'}: workload.options.argv: '/no/such/program' is not a program here (not "
        "on PATH, not a file)"]


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_only_a_setting_that_never_worked_without_pressure_lacks_a_baseline(tmp_path: Path) -> None:
    """baseline_failed is about no pressure at all: not a failure with bubbles up (the workload's result, the
    cliff's "does not work even at"), not a budget's OOM kill, not one crashed repeat among working ones."""
    dead = make_run(tmp_path / "dead", {"LL": [10, 11], "HH": [20, 21]}, [0, 1], repeats=2,
                    failed={("HH", 0): "failed"})  # fmt: skip
    verdict = validity.check(load_run(dead))
    assert "1 setting failed in every step with no pressure: HH (failed)" in message(verdict, "baseline_failed")
    sizes = make_run(tmp_path / "sizes", {"LL": [10, 11]}, [64, 128], axis="size_mb", failed={("LL", 64): "timeout"})
    assert "baseline_failed" not in codes(validity.check(load_run(sizes)))  # bubbles were up at 64 MiB
    once = make_run(tmp_path / "once", {"LL": [10, 11]}, [0, 1], repeats=2)
    points = pd.read_csv(once / "points.csv", dtype={"status": str, "error": str})
    points.loc[(points["repeat"] == 1) & (points["value"] == 0), ["status", "error"]] = ["failed", "worker died"]
    points.to_csv(once / "points.csv", index=False)
    assert "baseline_failed" not in codes(validity.check(load_run(once)))  # repeat 0 worked: a baseline exists
    points.loc[points["value"] == 0, ["status", "error"]] = ["failed", "worker died; OOM-killed inside the budget"]
    points.to_csv(once / "points.csv", index=False)
    assert "baseline_failed" not in codes(validity.check(load_run(once)))  # the device could not hold it: a result


def test_a_budget_that_throttles_the_run_is_invalid(tmp_path: Path) -> None:
    from bubbleup.pressure.budget import availability

    ok, why = availability()
    if not ok and os.environ.get("CI") != "true":
        pytest.skip(f"device budgets cannot be applied here: {why}")
    data = tiny(**{"sweep.values": [1], "bubble": {"size_mb": 16, "cpu_duty": 1.0, "pattern": "stream"},
                   "budget": {"memory_mb": 1024, "cpus": 0.5}})  # fmt: skip
    verdict, out = run(tmp_path, data)
    assert "throttled" in codes(verdict), verdict.lines()
    assert "the budget's CPU quota throttled the run" in message(verdict, "throttled")
    share = float(pd.read_csv(out / "bubbles.csv")["core_share"].iloc[0])
    assert share < validity.DELIVERY_FRACTION  # half a core for the worker and the bubble together
    # Its CPU had room (the quota, not the machine, held it back): a duty miss, unless others filled the CPUs.
    assert "bubble_duty" in codes(verdict) or "machine_busy" in codes(verdict), verdict.lines()


# -- the rules on fabricated runs --------------------------------------------------------------------------


def _fake(tmp_path: Path, curves: dict[str, list[float]] | None = None, **manifest: Any) -> Path:
    run_dir = make_run(tmp_path, curves or {"LL": [10, 12, 20]}, [0, 1, 2], telemetry=False)
    path = run_dir / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **manifest}))
    return run_dir


def _telemetry(run_dir: Path, busy: dict[int, tuple[float, float]], outside: float = 0.0) -> None:
    """Ten samples per point; ``busy`` maps a sweep value to (cpu0, cpu1) percent."""
    rows = [{"repeat": 0, "value": v, "t_s": 10 * v + i * 0.1, "cpu0_percent": c0, "cpu1_percent": c1,
             "outside_cpu_cores": outside, "run_cpu_cores": 1.0}
            for v, (c0, c1) in busy.items() for i in range(10)]  # fmt: skip
    pd.DataFrame(rows).to_csv(run_dir / "telemetry.csv", index=False)


def _bubbles(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    base = {"repeat": 0, "pid": 4242, "kind": "combined", "backend": "builtin", "size_mb": 64, "region_mb": 64.0,
            "baseline_mb": 35.0, "rss_ready_mb": 99.0, "rss_min_mb": 99.0, "region_min_mb": 64.0, "rss_samples": 10,
            "duty": 1.0, "core_share": 0.99, "rate_mb_s": float("nan"), "mb_per_s": 1000.0, "wall_s": 2.0,
            "fault": ""}  # fmt: skip
    pd.DataFrame([{**base, **r} for r in rows], columns=list(BUBBLE_COLUMNS)).to_csv(run_dir / "bubbles.csv",
                                                                                     index=False)  # fmt: skip


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_a_short_duty_is_a_miss_only_where_the_cpus_had_room(tmp_path: Path) -> None:
    run_dir = _fake(tmp_path, cpu_placement={"placement": "spread", "workload_cpus": "any", "bubble_cpus": [0, 1]},
                    machine_checks=[{"window_s": 1.0, "outside_cpu_cores": 0.0}])  # fmt: skip
    # At 1 bubble its CPU 0 was idle half the time: a miss. At 2, both bubbles' CPUs were full (the worker
    # shares them): getting less than a core there is the pressure itself, not a miss.
    _telemetry(run_dir, {0: (5, 5), 1: (55, 100), 2: (99, 98)})
    _bubbles(run_dir, [{"value": 1, "index": 0, "core_share": 0.5}, {"value": 2, "index": 0, "core_share": 0.6},
                       {"value": 2, "index": 1, "core_share": 0.6}])  # fmt: skip
    verdict = validity.check(load_run(run_dir))
    assert codes(verdict) == ["bubble_duty"], verdict.lines()
    text = message(verdict, "bubble_duty")
    assert text.startswith("1 bubble(s)") and "55% busy" in text
    assert "bubble 0 (pid 4242) at 1 bubble (repeat 1) delivered 0.50 of 1.00 core" in text
    # Unpinned, the same bubble could run on either CPU: together 65% busy, still room.
    run_dir2 = _fake(tmp_path / "free", cpu_placement={"placement": "free", "bubble_cpus": "any"})
    _telemetry(run_dir2, {0: (5, 5), 1: (30, 100), 2: (99, 98)})
    _bubbles(run_dir2, [{"value": 1, "index": 0, "core_share": 0.5}])
    assert "bubble_duty" in codes(validity.check(load_run(run_dir2)))


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_a_rate_bubble_is_held_to_its_rate_not_a_duty(tmp_path: Path) -> None:
    run_dir = _fake(tmp_path)
    _telemetry(run_dir, {0: (5, 5), 1: (30, 30), 2: (40, 40)})
    _bubbles(run_dir, [{"value": 1, "index": 0, "kind": "bandwidth", "duty": float("nan"), "core_share": 0.2,
                        "rate_mb_s": 2000.0, "mb_per_s": 1500.0}])  # fmt: skip
    verdict = validity.check(load_run(run_dir))
    assert codes(verdict) == ["bubble_rate"] and "delivered 1500 of 2000 MiB/s" in message(verdict, "bubble_rate")


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_precision_caps_falls_throttling_concurrency_and_a_busy_start(tmp_path: Path) -> None:
    run_dir = _fake(
        tmp_path,
        {"LL": [10, 20, 12]},  # faster at 2 bubbles than at 1: a non-monotone dial
        budget={"memory_limit_mb": 2048, "cpus": 1.5},
        budget_final_stats={"cpu_throttled_periods": 37, "cpu_throttled_s": 1.25, "cpu_usage_s": 40.0},
        concurrent_runs=[{"pid": 99, "run_dir": "/runs/other", "relation": "was running when this run started"}],
        machine_checks=[{"window_s": 1.0, "outside_cpu_cores": 0.9, "when": "before the first point"}],
    )
    points = pd.read_csv(run_dir / "points.csv")
    points["stopped_by"] = ["precision", "cap_seconds", "cap_inferences"]
    points["halfwidth"] = [0.04, 0.09, 0.03]
    points["target_halfwidth"] = 0.05
    points.to_csv(run_dir / "points.csv", index=False)
    verdict = validity.check(load_run(run_dir))
    assert sorted(codes(verdict)) == ["concurrent", "machine_busy_start", "non_monotone", "precision", "throttled"]
    assert "1 of 3 step(s) stopped at a cap" in message(verdict, "precision")
    assert "LL at 1 bubble (repeat 1): +/-9.0% reached, +/-5.0% asked (cap_seconds)" in message(verdict, "precision")
    assert "LL is not monotone" in message(verdict, "non_monotone")
    assert "37 time(s), 1.25 s in all (against 40.0 s of CPU used)" in message(verdict, "throttled")
    assert "pid 99, run directory /runs/other" in message(verdict, "concurrent")
    assert "0.90 cores over 1 s (before the first point)" in message(verdict, "machine_busy_start")
    # Unthrottled, precise, monotone and alone: those reasons go; what the fake cannot show is listed.
    clean = _fake(tmp_path / "clean", budget_final_stats=None, machine_checks=[{"outside_cpu_cores": 0.01}])
    verdict = validity.check(load_run(clean))
    assert verdict.valid and verdict.reasons == []
    assert any("bubbles.csv" in u for u in verdict.unchecked) and any("outside-CPU" in u for u in verdict.unchecked)
    assert validity.Validity.from_dict(verdict.to_dict()) == verdict


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_an_old_run_gets_a_verdict_computed_from_its_files(tmp_path: Path) -> None:
    from bubbleup.report.html import render

    old = load_run(ROOT / "tests" / "data" / "run-schema1")
    assert old.bubbles is None and old.manifest.validity is None
    verdict, recomputed = validity.of_run(old)
    assert recomputed and len(verdict.unchecked) >= 3  # no bubbles.csv, no start check, no outside CPU
    html = render(old)
    banner = html[html.index('id="validity"') : html.index('id="status"')]
    assert f"Result is: {verdict.word}" in banner and "computed from the run" in banner
    assert html.index('id="validity"') < html.index('id="summary"')  # among the report's first lines


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_an_invalid_run_is_marked_red_at_the_top_of_its_report(tmp_path: Path) -> None:
    from bubbleup.report.html import render

    run_dir = _fake(tmp_path, concurrent_runs=[{"pid": 7, "run_dir": "/elsewhere"}])
    verdict = validity.check(load_run(run_dir))
    path = run_dir / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "validity": verdict.to_dict()}))
    html = render(load_run(run_dir))
    top = html[html.index("<h1>") : html.index('id="status"')]
    assert 'class="banner invalid"' in top and "Result is: INVALID" in top
    assert "<code>concurrent</code>: 1 other bubbleup run(s) shared the machine" in top
    done = run_cli(["report", str(run_dir)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Result is: INVALID" in done.stdout and "  concurrent: " in done.stdout


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_a_run_that_measured_nothing_or_cannot_be_read_is_invalid(tmp_path: Path) -> None:
    """A report of nothing once said VALID; so did one whose manifest was not JSON."""
    run_dir = _fake(tmp_path)
    assert {r.code for r in validity.check(load_run(run_dir)).reasons} == set()
    samples = run_dir / "samples.csv"
    whole = samples.read_bytes()
    samples.write_bytes(whole[:2000])  # cut after a few rows, as a copy that ran out of disk leaves it
    verdict = validity.check(load_run(run_dir))
    assert [r.code for r in verdict.reasons] == ["damaged"], verdict.lines()
    assert re.fullmatch(r"incomplete: samples.csv holds \d+ of the \d+ timed inferences points.csv counts",
                        verdict.reasons[0].message), verdict.reasons[0].message
    # the same cut after the run recorded VALID: whatever reads the data again (report, compare) says so
    path = run_dir / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "validity": {"valid": True, "reasons": []}}))
    recorded, recomputed = validity.of_run(load_run(run_dir))
    assert not recorded.valid and [r.code for r in recorded.reasons] == ["damaged"] and not recomputed
    samples.write_bytes(whole)
    assert validity.of_run(load_run(run_dir))[0].valid
    points = run_dir / "points.csv"
    rows = points.read_text().splitlines(keepends=True)
    points.write_text("".join(rows[:-2]))  # a live run between its commits: samples of a point not yet in points
    assert {r.code for r in validity.check(load_run(run_dir)).reasons} == set()
    points.write_text("".join(rows))
    points.write_text(points.read_text().splitlines()[0] + "\n")  # the header alone: no point measured
    assert [r.code for r in validity.check(load_run(run_dir)).reasons] == ["no_data"]
    (run_dir / "manifest.json").write_text("not json{")
    done = run_cli(["report", str(run_dir)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # the report is still written, and says why it is not valid
    assert "Result is: INVALID" in done.stdout
    assert "  damaged: unreadable: manifest.json is not valid JSON" in done.stdout
    assert "  no_data: no point was measured" in done.stdout
