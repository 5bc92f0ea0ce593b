"""``bubbleup compare A B --fail-if-slower 10% --fail-if-cliff-earlier``: a regression gate for CI pipelines
(pyperf compare_to's --min-speed, pytest-benchmark's --benchmark-compare-fail): exit 1 with one line per
regression on a made regression, exit 0 without one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from fixtures_runs import make_run


def _gate(tmp_path: Path, a: Path, b: Path, *flags: str) -> tuple[int, list[str], str]:
    done = run_cli(["compare", str(a), str(b), "--out", str(tmp_path / "cmp.html"), *flags], cwd=tmp_path)
    lines = [x.removeprefix("regression: ") for x in done.stdout.splitlines() if x.startswith("regression: ")]
    return done.returncode, lines, done.stderr


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_a_made_slowdown_fails_the_gate_and_noise_does_not(tmp_path: Path) -> None:
    values = [0, 1, 2, 3]
    a = make_run(tmp_path, {"LL": [10, 11, 12, 13], "HH": [20, 21, 22, 23]}, values, name="a", seed=1, repeats=3)
    same = make_run(tmp_path, {"LL": [10, 11, 12, 13], "HH": [20, 21, 22, 23]}, values, name="same", seed=2,
                    repeats=3)  # fmt: skip
    code, lines, err = _gate(tmp_path, a, same, "--fail-if-slower", "10%", "--fail-if-cliff-earlier")
    assert code == 0 and lines == [], err
    # HH 25% slower at 2 bubbles, LL 7% slower there: only HH passes a 10% gate
    slow = make_run(tmp_path, {"LL": [10, 11, 12.84, 13], "HH": [20, 21, 27.5, 23]}, values, name="slow", seed=3,
                    repeats=3, noise=0.02)  # fmt: skip
    code, lines, err = _gate(tmp_path, a, slow, "--fail-if-slower", "10%")
    assert code == 1 and len(lines) == 1, (lines, err)
    assert lines[0].startswith("HH at 2: B 1.2") and "more than 10%" in lines[0]
    assert "1 regression of B against A" in err
    code, lines, _ = _gate(tmp_path, a, slow, "--fail-if-slower", "5%")
    assert code == 1 and [x.split(":")[0] for x in lines] == ["LL at 2", "HH at 2"]
    code, lines, _ = _gate(tmp_path, a, slow)  # no gate asked: a comparison only
    assert code == 0 and lines == []


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_a_cliff_two_steps_earlier_fails_one_step_does_not(tmp_path: Path) -> None:
    values = [0, 1, 2, 3, 4, 5]
    a = make_run(tmp_path, {"LL": [10, 10, 10, 10, 40, 45]}, values, name="a", seed=1, repeats=2)
    one = make_run(tmp_path, {"LL": [10, 10, 10, 40, 42, 45]}, values, name="one", seed=2, repeats=2)
    two = make_run(tmp_path, {"LL": [10, 10, 40, 42, 44, 45]}, values, name="two", seed=3, repeats=2)
    code, lines, _ = _gate(tmp_path, a, one, "--fail-if-cliff-earlier")
    assert code == 0 and lines == []
    code, lines, _ = _gate(tmp_path, a, two, "--fail-if-cliff-earlier")
    assert code == 1 and lines == ["LL: cliff at 2 in B, at 4 in A (more than one step lower)"]


@pytest.mark.beside_others  # synthetic runs (fixtures_runs): nothing measured
def test_a_partial_or_invalid_b_is_said_and_a_partial_one_fails_the_gate(tmp_path: Path) -> None:
    """B killed after two of its four points: the gate cannot pass what B never measured, and says which; an
    INVALID run is named as such above the table, with its reasons' codes."""
    values = [0, 1, 2, 3]
    curves = {"LL": [10, 11, 12, 13]}
    a = make_run(tmp_path, curves, values, name="a", seed=1, repeats=2)
    partial = make_run(tmp_path, curves, values, name="partial", seed=2, repeats=2, status="running",
                       missing=[(0, 2), (0, 3), (1, 2), (1, 3)])  # fmt: skip
    code, lines, err = _gate(tmp_path, a, partial, "--fail-if-slower", "10%")
    assert code == 1 and lines == ["LL at 2: not measured in B", "LL at 3: not measured in B"], (lines, err)
    broke = make_run(tmp_path, curves, values, name="broke", seed=3, repeats=2, failed={("LL", 3): "failed"})
    code, lines, err = _gate(tmp_path, broke, partial, "--fail-if-slower", "10%")
    assert code == 1 and lines == ["LL at 2: not measured in B"], (lines, err)  # 3 failed in A: nothing to keep
    manifest = partial / "manifest.json"
    data = json.loads(manifest.read_text())
    data["validity"] = {"valid": False, "reasons": [{"code": "machine_busy", "message": "someone else"}]}
    manifest.write_text(json.dumps(data))
    done = run_cli(["compare", str(a), str(partial), "--out", str(tmp_path / "cmp.html")], cwd=tmp_path)
    assert "! Run B is partial (status running" in done.stdout, done.stdout
    assert "! Run B is INVALID (machine_busy)" in done.stdout, done.stdout
    assert "Run A is INVALID" not in done.stdout


@pytest.mark.beside_others  # input checks: nothing timed
def test_a_bad_threshold_is_one_line_exit_2(tmp_path: Path) -> None:
    a = make_run(tmp_path, {"LL": [10, 11]}, [0, 1], name="a")
    done = run_cli(["compare", str(a), str(a), "--fail-if-slower", "fast"], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: compare: --fail-if-slower: 'fast' is not a percentage such as 10%"]
    done = run_cli(["compare", str(a), str(a), "--out", str(tmp_path)], cwd=tmp_path)  # a directory, not a file
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: {tmp_path}: is a directory; --out names the HTML file to write"]
    # argparse reads "-5%" as the next option; the line says how to pass it, and the value is then judged
    done = run_cli(["compare", str(a), str(a), "--fail-if-slower", "-5%"], cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--option=VALUE" in done.stderr, done.stderr
    done = run_cli(["compare", str(a), str(a), "--fail-if-slower=-5%"], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: compare: --fail-if-slower: -5% must be above 0% and below 1000%"]
