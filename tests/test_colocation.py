"""Bubble-Up's steps 2 and 3: sensitivity curves as data, the reporter, bubble scores and predictions."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from conftest import (
    ROOT,
    alive,
    descendants,
    killing_marked,
    marked,
    run_cli,
    running_cli,
    wait_all_gone,
    wait_until,
    write_scenario,
)
from fixtures_runs import make_run

from bubbleup.analysis import prediction, sensitivity
from bubbleup.analysis.prediction import ABOVE, BELOW, INSIDE
from bubbleup.analysis.sensitivity import SensitivityCurve, SensitivityPoint
from bubbleup.colocation import reporter
from bubbleup.pressure.kinds import llc_bytes
from bubbleup.store.reader import load_run

SIZES = [0, 1, 2, 4, 8, 16, 32, 64, 128]


def _curve(qos: list[float], setting: str = "s", base_ms: float = 10.0, sizes: list[int] = SIZES) -> SensitivityCurve:
    pts = tuple(SensitivityPoint(float(s), base_ms / q, q, q - 0.02, min(q + 0.02, 1.02), 100, 3)
                for s, q in zip(sizes, qos, strict=True))  # fmt: skip
    return SensitivityCurve(setting, 50.0, float(sizes[0]), base_ms, pts)


# -- sensitivity curves from a run -------------------------------------------------------------------


def test_a_size_sweep_writes_sensitivity_curves_that_read_back(tmp_path: Path) -> None:
    # Latency doubles from 0 to 128 MiB: QoS falls from 1 to 0.5.
    lat = [10, 10, 10.5, 11, 12, 14, 17, 19, 20]
    run_dir = make_run(tmp_path, {"a": lat}, SIZES, axis="size_mb", repeats=3, noise=0.02,
                       bubbles=[{"kind": "bubble-up"}])  # fmt: skip
    run = load_run(run_dir)
    path = sensitivity.write(run)
    assert path is not None and path.name == "sensitivity.csv"
    data = pd.read_csv(path)
    assert list(data.columns) == list(sensitivity.COLUMNS)
    assert set(data["percentile"]) == {50, 95}
    back = sensitivity.read(run_dir)
    median = next(c for c in back if c.percentile == 50)
    assert median.qos[0] == pytest.approx(1.0)
    assert median.qos[-1] == pytest.approx(0.5, abs=0.03)
    for p in median.points:
        assert p.qos_low <= p.qos <= p.qos_high
    assert (np.diff(median.monotone()) <= 1e-12).all()


def test_a_count_sweep_has_no_sensitivity_curve(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, {"a": [10, 20]}, [0, 1])
    assert sensitivity.write(load_run(run_dir)) is None
    assert not (run_dir / "sensitivity.csv").exists()


# -- scores and predictions on known curves ----------------------------------------------------------


def test_the_score_inverts_the_reporter_curve_by_interpolation() -> None:
    rep = _curve([1.0, 1.0, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6, 0.55])
    size, where = prediction.invert(rep, 0.85)  # halfway between 8 MiB (0.9) and 16 MiB (0.8)
    assert where == INSIDE and size == pytest.approx(12.0)
    assert prediction.invert(rep, 1.0) == (0.0, BELOW)  # no pressure the reporter can see
    assert prediction.invert(rep, 0.4) == (128.0, ABOVE)  # slower than the largest bubble slows it


def test_a_non_monotone_reporter_curve_is_inverted_through_its_monotone_fit() -> None:
    rep = _curve([1.0, 0.95, 0.97, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5])  # a bump at 2 MiB: pooled to 0.96, 0.96
    assert rep.monotone()[1:3] == pytest.approx([0.96, 0.96])
    size, where = prediction.invert(rep, 0.955)  # past the pooled plateau: just above 2 MiB
    assert where == INSIDE and 2.0 < size < 2.5
    assert prediction.invert(rep, 0.97)[0] == pytest.approx(0.75)  # 1.0 -> 0.96 over 0-1 MiB


def test_a_reporter_curve_flat_within_its_noise_is_said_to_read_noise() -> None:
    from bubbleup.colocation.reporter import flat_warning

    flat = _curve([1.0, 0.99, 1.01, 0.99, 1.0, 0.98, 0.995, 1.0, 0.99])  # every CI (+/-0.02) reaches 1
    assert "does not fall beyond its own noise" in flat_warning(flat) and "0.98 [0.96, 1.00] at 16 MiB" in (
        flat_warning(flat))
    assert flat_warning(_curve([1.0, 0.99, 0.97, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5])) == ""


def test_prediction_interpolates_inside_the_range_and_says_so_outside() -> None:
    workload = _curve([1.0, 1.0, 1.0, 0.9, 0.8, 0.6, 0.5, 0.45, 0.4], setting="HH", base_ms=20.0)
    inside = prediction.Score(12.0, 10.0, 14.0, INSIDE, 0.85, 0.84, 0.86)
    (p,) = prediction.predict([workload], inside)
    assert p.qos == pytest.approx(0.7) and not p.outside  # halfway between 0.8 at 8 and 0.6 at 16
    assert p.latency_ms == pytest.approx(20.0 / 0.7)
    assert p.qos_low < p.qos < p.qos_high
    # slower than the reporter's largest bubble: the score is clamped there, inside the workload's sizes, and the
    # sentence says which range it left (it used to say "outside the measured sizes (0-128 MiB)" of 128 MiB)
    clamped = prediction.Score(128.0, 128.0, 128.0, ABOVE, 0.3, 0.29, 0.31)
    (q,) = prediction.predict([workload], clamped)
    assert q.outside and "slowed the reporter more than its largest bubble did" in q.sentence()
    assert "outside the measured sizes" not in q.sentence()
    beyond = prediction.Score(500.0, 400.0, 600.0, INSIDE, 0.5, 0.49, 0.51)  # a reporter curve reaching further
    (r,) = prediction.predict([workload], beyond)
    assert r.outside and "the score 500 MiB lies outside the measured sizes (0-128 MiB)" in r.sentence()


# -- the reporter, the score command and the co-runner shim, for real -------------------------------


@pytest.fixture(scope="module")
def reporter_curve(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reporter's curve measured on this machine, small: 4 sizes up to 4x its LLC, 3 repeats (about 25 s)."""
    out = tmp_path_factory.mktemp("reporter")
    from bubbleup.colocation import workflow

    workflow.calibrate_reporter(out / "reporter.json", out / "runs", repeats=3, sizes=[0, 4, "1 llc", "4 llc"])
    return out / "reporter.json"


@pytest.mark.slow
def test_the_reporter_curve_is_monotone_and_the_bubble_misses_more_as_it_grows(reporter_curve: Path) -> None:
    made = reporter.load(reporter_curve)
    assert made.curve.qos[0] == pytest.approx(1.0) and made.fingerprint == reporter.fingerprint()
    # Monotone within noise: no size is faster than a smaller one beyond both intervals. (How much the
    # reporter slows is this VM's business: see README "Bubble-Up: scores and predictions".)
    for small, big in zip(made.curve.points, made.curve.points[1:], strict=False):
        assert big.qos_low <= small.qos_high, (small, big)
    # The dial itself: the bubble's own scattered accesses slow as its region outgrows each cache level.
    bubbles = pd.read_csv(Path(made.run_dir) / "bubbles.csv")
    rate = bubbles[bubbles["value"] > 0].groupby("value")["accesses_per_s"].median()
    assert (bubbles.loc[bubbles["value"] > 0, "mb_per_s"] > 0).all()
    beyond = max(rate.index)  # four times this machine's LLC (32 MiB on one VM here, 300 MiB on another)
    assert beyond >= 4 * llc_bytes() // (1 << 20) and rate[beyond] < 0.8 * rate[4], rate


@pytest.mark.slow
def test_the_score_measures_what_the_co_runner_used(reporter_curve: Path, tmp_path: Path) -> None:
    """A co-runner that is itself a 64 MiB Bubble-Up bubble: about one core busy and its region held, as
    measured over its process tree while it ran (whether it *scores* 64 MiB is this VM's noise: README)."""
    bubble = [sys.executable, "-m", "bubbleup", "bubble", "--size-mb", "64", "--pattern", "mixed"]
    done = run_cli(["score", "--reporter", str(reporter_curve), "--repeats", "2", "--startup-s", "0.5", "-q",
                    "--out", str(tmp_path / "score"), "--", *bubble], cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    cores = float(done.stdout.split("it keeps ")[1].split(" cores")[0])
    held = float(done.stdout.split("held ")[1].split(" MiB")[0])
    assert 0.8 <= cores <= 1.1 and held >= 64, done.stdout
    bubbles = pd.read_csv(tmp_path / "score" / "bubbles.csv")
    assert set(bubbles["kind"]) == {"command"} and (bubbles["rss_peak_mb"] >= 64).all()


@pytest.mark.slow
def test_a_mix_is_scored_together_and_its_programs_measured_alone(reporter_curve: Path, tmp_path: Path) -> None:
    """A co-runner of two programs (a busy loop and a sleeper): both run beside the reporter in every repeat, as two
    processes; their cores are measured one at a time (about 1 and 0) and add up to the co-runner's. Nothing of
    either survives."""
    from bubbleup.colocation import workflow

    marker = f"bubbleup-mix-test-{tmp_path.name}"
    programs = [["sh", "-c", "while :; do :; done", marker], ["sh", "-c", "sleep 600", marker]]
    s, run = workflow.score_command(programs, reporter.load(reporter_curve), tmp_path / "score", repeats=2,
                                      startup_s=0.3)  # fmt: skip
    assert run.bubbles is not None
    beside = run.bubbles[run.bubbles["value"] == 1]
    assert [sorted(g) for _, g in beside.groupby("repeat")["index"]] == [[0, 1], [0, 1]] and beside["pid"].is_unique
    assert len(s.corunner_sessions) == 2 and 0.8 < s.corunner_sessions[0] < 1.15 and s.corunner_sessions[1] < 0.1, s
    assert s.corunner_cores == pytest.approx(sum(s.corunner_sessions))
    survivors = [p.pid for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert survivors == []


@pytest.mark.skipif(len(psutil.Process().cpu_affinity() or []) < 2, reason="needs two CPUs")
def test_a_co_runners_cpu_demand_is_measured_unpinned_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """The cores a co-runner keeps busy, measured alone and unpinned (a run of its own): two busy shell loops take
    two cores, where the score run, confined to the one CPU the reporter leaves on 2 CPUs, measured one; a single
    loop takes one; each program of a mix of two one-loop programs, measured alone (together on 2 CPUs they
    would cap each other), one. No loop survives (found by
    the marker in their command lines, orphans included)."""
    from bubbleup.colocation.workflow import cpu_demand, demand_runs

    marker = f"bubbleup-demand-test-{tmp_path.name}"
    one, two = "while :; do :; done", "while :; do :; done & while :; do :; done"
    loops = {1: [["sh", "-c", one, marker]], 2: [["sh", "-c", two, marker]],
             "mix": [["sh", "-c", one, marker], ["sh", "-c", one, marker]]}  # fmt: skip
    cores = {n: cpu_demand(programs, tmp_path / f"demand{n}", window_s=1.0, startup_s=0.3)
             for n, programs in loops.items()}  # fmt: skip
    assert len(cores[2]) == 1 and cores[2][0] > 1.6 and 0.8 < cores[1][0] < 1.15, cores
    assert len(cores["mix"]) == 2 and all(0.8 < c < 1.15 for c in cores["mix"]), cores
    bubbles = pd.read_csv(tmp_path / "demand2" / "bubbles.csv")
    assert list(bubbles["kind"]) == ["command"] and bubbles["core_share"].iloc[0] == pytest.approx(cores[2][0])
    assert [load_run(d).bubbles["core_share"].iloc[0] for d in demand_runs(tmp_path / "demandmix", 2)] == \
        pytest.approx(cores["mix"])  # fmt: skip
    survivors = [p.pid for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert survivors == []


@pytest.mark.beside_others  # processes and files only: nothing timed, no validity verdict
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_score_leaves_no_process_behind(tmp_path: Path, sig: signal.Signals) -> None:
    """Interrupt or kill ``score`` while its co-runner runs: the co-runner and its shim go too."""
    rep = tmp_path / "reporter.json"
    reporter.save(rep, _curve([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35]), tmp_path, reporter.WORKLOAD)
    marker = f"bubbleup-test-{sig.name}"
    with running_cli(["score", "--reporter", str(rep), "--repeats", "3", "--", "sleep", "3600", marker], tmp_path) as (
        proc, pids
    ):  # fmt: skip
        sleeper = wait_until(lambda: next((p for p in descendants(proc.pid) if marker in " ".join(p.cmdline())),
                                          None), 120, "the co-runner to start")  # fmt: skip
        family = [p.pid for p in descendants(proc.pid)]
        pids.extend(family)
        assert sleeper.pid in family
        proc.send_signal(sig)
        proc.wait(timeout=60)
        assert wait_all_gone(family, 15.0) == []
    assert not alive(sleeper.pid)


@pytest.mark.beside_others  # processes and files only: nothing timed, no validity verdict
@pytest.mark.parametrize("ending", ["killed", "finished"])
def test_what_a_co_runner_leaves_behind_goes_with_it(tmp_path: Path, ending: str) -> None:
    """A shell that backgrounds a child and ends: the child is no longer in the program's tree, and a restart
    (the program ended cleanly) used to leave one more each time; a SIGKILL of the orchestrator left them all.
    The shim is their subreaper and stops them, on a restart, at the end, and when the orchestrator dies."""
    rep = tmp_path / "reporter.json"
    reporter.save(rep, _curve([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35]), tmp_path, reporter.WORKLOAD)
    marker = f"{3000 + tmp_path.stat().st_ino % 500}.{len(ending)}17"  # a sleep length no one else uses
    program = ["sh", "-c", f"sleep {marker} & sleep 0.6"]  # ready after 0.3 s, restarted every 0.6 s
    args = ["score", "--reporter", str(rep), "--repeats", "2", "--startup-s", "0.3", "-q", "--out", str(tmp_path / "s"),
            "--", *program]  # fmt: skip
    with killing_marked(marker), running_cli(args, tmp_path) as (proc, pids):
        wait_until(lambda: marked(marker) or None, 120, "the co-runner's background child to start")
        pids.extend(p.pid for p in descendants(proc.pid))
        if ending == "killed":
            proc.send_signal(signal.SIGKILL)
        seen: set[int] = set()
        while proc.poll() is None:  # watch it to the end: a restart shows as a second background child
            seen.update(marked(marker))
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
        assert proc.returncode == (-9 if ending == "killed" else 0), proc.stderr.read() if proc.stderr else ""
        if ending == "finished":
            assert len(seen) >= 2, seen  # restarted at least once: the leak needed a restart to show
        # inside the block: leaving it kills every PID the test noted, these included
        assert wait_until(lambda: not marked(marker), 15, "every process the co-runner left to go")


@pytest.mark.beside_others  # input checks: nothing timed
def test_score_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    rep = tmp_path / "reporter.json"
    reporter.save(rep, _curve([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35]), tmp_path, reporter.WORKLOAD)
    cases = {
        "no-such-program-xyz": ["--", "no-such-program-xyz", "1"],
        "exited at once": ["--", "true"],
        "give the co-runner's command": [],
    }
    last = {}
    for expected, tail in cases.items():
        done = run_cli(["score", "--reporter", str(rep), "--repeats", "3", "-q", "--out",
                        str(tmp_path / f"s{len(tail)}"), *tail], cwd=tmp_path, timeout=120)  # fmt: skip
        assert done.returncode == 2, (expected, done.stderr)
        last[expected] = done.stderr.strip().splitlines()[-1]
        assert expected in last[expected] and "Traceback" not in done.stderr, done.stderr
    # A co-runner that cannot run stops the score at its first failure, not after every repeat failed alike,
    # and the message ends in words, not a bare colon where its stderr would go.
    points = pd.read_csv(tmp_path / "s2" / "points.csv")
    assert set(points["repeat"]) == {0} and list(points.loc[points["value"] == 1, "status"]) == ["failed"]
    assert "true exited at once (status 0, within 1 s) (nothing on its stderr)" in last["exited at once"], last
    missing = run_cli(["score", "--reporter", str(tmp_path / "none.json"), "--", "sleep", "1"], cwd=tmp_path)
    assert missing.returncode == 2 and "calibrate --reporter" in missing.stderr
    data = json.loads(rep.read_text())
    data["fingerprint"]["cpu_model"] = "Some Other CPU"
    rep.write_text(json.dumps(data))
    other = run_cli(["score", "--reporter", str(rep), "--", "sleep", "1"], cwd=tmp_path)
    assert other.returncode == 2 and "another kind of machine" in other.stderr and "Some Other CPU" in other.stderr


@pytest.mark.beside_others  # input checks: nothing timed
def test_predict_refuses_a_run_without_a_bubble_up_size_sweep(tmp_path: Path) -> None:
    count_run = make_run(tmp_path / "a", {"a": [10, 20]}, [0, 1])
    done = run_cli(["predict", str(count_run), "--score", "8"], cwd=tmp_path)
    assert done.returncode == 2 and "sweeps the size of a bubble-up bubble" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_predict_prints_each_setting_at_a_given_score(tmp_path: Path) -> None:
    lat = [10, 10, 10.5, 11, 12, 14, 17, 19, 20]
    run_dir = make_run(tmp_path, {"LL": lat, "HH": [2 * x for x in lat]}, SIZES, axis="size_mb", repeats=2,
                       bubbles=[{"kind": "bubble-up"}])  # fmt: skip
    done = run_cli(["predict", str(run_dir), "--score", "24"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["LL", "HH"]
    assert "predicted QoS 0.6" in lines[0]  # 10 / 15.5 between 16 and 32 MiB
    far = run_cli(["predict", str(run_dir), "--score", "5000"], cwd=tmp_path)
    assert far.returncode == 0 and "outside the measured sizes" in far.stdout
    assert "the score 5000 MiB" in far.stdout, far.stdout  # not 5e+03


@pytest.mark.beside_others  # input checks: nothing timed
def test_predict_and_check_refuse_bad_arguments_in_one_line(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, {"LL": [10, 11, 12]}, [0, 16, 32], axis="size_mb", bubbles=[{"kind": "bubble-up"}])
    none = str(tmp_path / "none.json")
    cases = {  # arguments -> words of the one line
        ("--score", "-1"): "argument --score: must be a finite number, 0 or more, got -1",
        ("--score", "nan"): "argument --score: must be a finite number, 0 or more, got nan",
        ("--score", "abc"): "argument --score: expected a number, got 'abc'",
        ("--score", "10", "--with", "--", "true"): "give either --score MIB or --with -- CMD",
        ("--score", "10", "--cores", "1"): "--cores is read off a CPU curve: give the CPU-curve run too",
        # the documented form parses (it was "unrecognized arguments: -- ..."): it stops at the missing reporter
        ("--reporter", none, "--with", "--", "sleep", "1"): "calibrate --reporter",
    }
    for args, words in cases.items():
        done = run_cli(["predict", str(run_dir), *args], cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and words in lines[0], (args, done.stderr)
    done = run_cli(["check-prediction", str(run_dir), "--reporter", none, "--corunner", "'unbalanced"], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == \
        "error: check-prediction: --corunner \"'unbalanced\": No closing quotation"  # fmt: skip
    for mix, words in ((["true"], "--mix takes two or more commands"), (["true", "'x"], "--mix \"'x\"")):
        done = run_cli(["check-prediction", str(run_dir), "--reporter", none, "--mix", *mix], cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and words in lines[0], (mix, done.stderr)


@pytest.mark.beside_others  # input checks: nothing timed
def test_a_bubble_up_bubble_must_run_apart(tmp_path: Path) -> None:
    data = {"name": "x", "workload": {"kind": "synthetic"}, "bubble": {"kind": "bubble-up"},
            "sweep": {"axis": "size_mb", "values": [0, 8]}}  # fmt: skip
    done = run_cli(["validate", str(write_scenario(tmp_path, data))], cwd=tmp_path)
    assert done.returncode == 2 and "cpus.placement" in done.stderr and "apart" in done.stderr


def test_the_co_runner_shim_kills_a_program_past_the_memory_guard(tmp_path: Path) -> None:
    """A co-runner that grows past the memory it may use is killed, and says so; the machine is never at risk:
    the guard's limit here is made small by a huge reserve (everything available but 200 MiB)."""
    import subprocess

    reserve = int(psutil.virtual_memory().available / (1 << 20)) - 200
    grow = [sys.executable, "-c", "import time; b = bytearray(400 << 20); b[::4096] = b'x' * len(b[::4096]); "
            "time.sleep(600)"]  # fmt: skip
    shim = subprocess.run([sys.executable, "-m", "bubbleup.pressure.corunner", "--command", json.dumps(grow),
                           "--startup-s", "30", "--reserve-mb", str(reserve)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert shim.returncode == 3
    assert "past the" in shim.stdout and "killed" in shim.stdout, shim.stdout


def test_a_bubble_that_dies_while_running_says_why(tmp_path: Path) -> None:
    """The pool's check between inferences reports the bubble's own last words, not only an exit status: a
    co-runner that grows past the guard after it was ready is named with the guard's message."""
    import time

    from bubbleup.errors import BubbleFailed
    from bubbleup.pressure.pool import BubblePool
    from bubbleup.scenario import BubbleSpec

    reserve = int(psutil.virtual_memory().available / (1 << 20)) - 120
    grow = [sys.executable, "-c", "import time; time.sleep(1.0); b = bytearray(200 << 20); "
            "b[::4096] = b'x' * len(b[::4096]); time.sleep(600)"]  # fmt: skip
    pool = BubblePool([(BubbleSpec(kind="command", command=grow, startup_s=0.2), 0)], reserve_mb=reserve)
    with pool, pytest.raises(BubbleFailed, match=r"bubble 0 \(pid \d+\): the co-runner grew to .* past the") as failed:
        pool.start()
        pool.wait_ready(30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pool.check_alive()
            with contextlib.suppress(subprocess.TimeoutExpired):  # wait on its exit, a check at least every 0.2 s
                pool.bubbles[0].proc.wait(timeout=0.2)
    assert "MiB it may use" in str(failed.value)


def test_bubbles_joining_later_count_the_room_a_live_co_runner_may_grow_into() -> None:
    """A schedule adds bubbles phase by phase. A co-runner started in an earlier phase was given what was left
    as its guard's limit; a bubble that joins later must not be allowed to take the same memory again."""
    from bubbleup.errors import BubbleFailed
    from bubbleup.pressure.pool import BubblePool
    from bubbleup.scenario import BubbleSpec

    idle = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    members = [(BubbleSpec(kind="command", command=idle, startup_s=0.1), 0), (BubbleSpec(kind="memory"), 64)]
    with BubblePool(members, max_memory_fraction=0.5) as pool:
        pool.grow(1)
        pool.wait_ready(30)
        limit = pool.bubbles[0].limit_mb
        assert limit is not None and pool.bubbles[0].headroom_mb() > limit - 100
        with pytest.raises(BubbleFailed, match="live co-runners may still grow into"):
            pool.grow(2)
        assert len(pool.live) == 1
    with BubblePool(members[1:], max_memory_fraction=0.5) as alone:  # the same bubble alone is allowed
        alone.grow(1)
        alone.wait_ready(30)
