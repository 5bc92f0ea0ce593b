"""The pytest plugin, through pytest's own ``pytester``: a user's test that passes beside no bubble and fails its
threshold beside heavy pressure, the saved run directories, and the regression gate against a baseline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bubbleup import analysis

pytest_plugins = ("pytester",)


@pytest.fixture(autouse=True)
def _without_hypothesis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's pytest runs in a subprocess, which would load every installed plugin: hypothesis's costs 0.7 s a
    start here and has nothing to do with the user's tests."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")

USER_TESTS = '''
import os

import pytest


def work():
    """Pure Python work, ~20 ms: longer than a scheduler time slice, so beside bubbles its median grows too."""
    s = 0
    for i in range(int(os.environ.get("WORK_N", "200000"))):
        s += i * i
    return s


def test_quiet(contention):
    result = contention(work, bubbles=0, inferences=30, repeats=2, size_mb=16, settle_s=0)
    assert result.slowdown(p=95) <= 1.5


@pytest.mark.contention(cpu_duty=1.0, size_mb=16, pattern="none")
def test_loaded(contention):
    result = contention(work, bubbles=4, inferences=30, repeats=1)
    low, high = result.interval(p=50)
    assert low <= result.slowdown(p=50) <= high
    assert result.slowdown(p=50) <= 1.5, str(result)


def test_a_closure_is_refused(contention):
    contention(lambda: None)


def broken():
    raise RuntimeError("the model file is missing")


def test_a_failing_function_fails_in_words(contention):
    contention(broken, bubbles=1, inferences=5, repeats=1, size_mb=16)
'''


def test_a_user_test_passes_quiet_and_fails_its_threshold_loaded(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Four full-core bubbles on two CPUs leave the worker a third of one (spread placement): the loaded test's
    median slowdown is well above 1.5 and it fails with the result in its message; the quiet one passes; each
    call is a run directory under --contention-dir that load_run reads; a lambda is refused in words."""
    pytester.makepyfile(test_user=USER_TESTS)
    runs = tmp_path / "runs"
    result = pytester.runpytest_subprocess("--contention-dir", str(runs), "-q")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    assert "x median slowdown [" in out and "beside 4 bubbles" in out
    assert "is not a module's top-level function" in out
    # a function that raises fails its test in one line naming why, not with a traceback from the statistics
    assert re.search(r"no timed inferences beside 0 bubbles \(failed: .*the model file is missing", out), out
    assert "need at least one array" not in out
    saved = sorted(p.parent for p in runs.glob("*/*/manifest.json") if "failing" not in str(p))
    assert [p.parent.name for p in saved] == ["test_user.test_loaded", "test_user.test_quiet"]
    loaded = analysis.load_run(saved[0])
    assert sorted(loaded.values) == [0.0, 4.0] and loaded.status == "complete"
    timed = loaded.samples[loaded.samples["phase"] == "timed"]
    medians = timed.groupby("value")["latency_ms"].median()
    assert medians[4.0] / medians[0.0] > 1.5
    # the selection marker: -m "not contention" leaves every test of the fixture out
    skipped = pytester.runpytest_subprocess("-m", "not contention", "-q")
    skipped.assert_outcomes(deselected=4)


TWO_CALLS = '''
from test_user import work


def twice():
    return work() + work()


def test_two_calls(contention):
    contention(twice, bubbles=0, inferences=20, repeats=2, size_mb=16, settle_s=0)
    contention(work, bubbles=0, inferences=20, repeats=2, size_mb=16, settle_s=0)
'''


def test_the_gate_fails_a_test_slower_than_its_baseline(pytester: pytest.Pytester, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The same quiet test, first as the baseline, then with twice the work: against the baseline with a 25% gate
    it fails naming the regression; a run like the baseline passes the same gate (at 10%, a run like it read
    1.10x its baseline in a noisy spell of the VM: a second of work sees the machine's minute, not only the
    code). A test that calls contention twice, on functions twice apart, is compared call by call (each call
    with its own baseline once failed it); the terminal summary says how each call compared."""
    pytester.makepyfile(test_user=USER_TESTS, test_two=TWO_CALLS)
    base, again, slow = tmp_path / "base", tmp_path / "again", tmp_path / "slow"
    common = ["-q", "-k", "quiet or two_calls"]
    pytester.runpytest_subprocess(*common, "--contention-dir", str(base)).assert_outcomes(passed=2)
    gate = ["--contention-compare", str(base), "--contention-compare-fail", "25%"]
    same = pytester.runpytest_subprocess(*common, "--contention-dir", str(again), *gate)
    same.assert_outcomes(passed=2)
    summary = same.stdout.str()
    # one line per call, each against its own baseline (whether noise moved a point past 5% is not the question)
    for call in ("test_two\\.test_two_calls", "test_two\\.test_two_calls\\.call2"):
        line = call + r": [01] of 1 points changed; largest B/A .* \(against .*" + call + "/"
        assert re.search(line, summary), summary
    monkeypatch.setenv("WORK_N", "400000")
    failed = pytester.runpytest_subprocess("-q", "-k", "quiet", "--contention-dir", str(slow), *gate)
    failed.assert_outcomes(failed=1)
    out = failed.stdout.str()
    assert "contention regression against" in out and "more than 25%" in out
    found = re.search(r"default at 0: B (\d+\.\d+)x slower", out)
    assert found and float(found.group(1)) > 1.5, out  # twice the work: well past the 25% gate


def test_a_result_says_when_its_run_is_invalid(tmp_path: Path) -> None:
    """What a failing assertion prints names a contaminated run as such, and the verdict is there to assert on."""
    import json

    from fixtures_runs import make_run

    from bubbleup.pytest_plugin import ContentionResult

    run_dir = make_run(tmp_path, {"default": [10.0, 20.0]}, [0, 2], repeats=2)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["validity"] = {"valid": False, "reasons": [{"code": "machine_busy", "message": "someone else"}]}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = ContentionResult(analysis.load_run(run_dir), run_dir, 2)
    assert not result.validity.valid and [r.code for r in result.validity.reasons] == ["machine_busy"]
    assert str(result).endswith("; the run is INVALID (machine_busy))"), str(result)
    # ``assert result.validity.valid, result`` prints repr(result): the verdict, not the run's data frames
    assert repr(result) == f"ContentionResult({result})" and "DataFrame" not in repr(result)
    manifest["validity"] = {"valid": True, "reasons": []}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    again = ContentionResult(analysis.load_run(run_dir), run_dir, 2)
    assert again.validity.valid and "INVALID" not in str(again) and 1.8 < again.slowdown() < 2.2


@pytest.mark.parametrize(("options", "says"), [
    (["--contention-compare", "base", "--contention-compare-fail=-5%"], "-5% must be above 0%"),
    (["--contention-compare-fail", "abc"], "--contention-compare-fail needs --contention-compare=DIR"),
])  # fmt: skip
@pytest.mark.beside_others  # input checks: nothing timed
def test_bad_plugin_options_are_usage_errors_before_any_test(pytester: pytest.Pytester, options: list[str],
                                                             says: str) -> None:  # fmt: skip
    pytester.makepyfile(test_user=USER_TESTS)
    done = pytester.runpytest_subprocess("-q", "-k", "quiet", *options)
    assert done.ret == pytest.ExitCode.USAGE_ERROR and says in done.stderr.str(), done.stderr.str()
    assert "passed" not in done.stdout.str() and "failed" not in done.stdout.str()


@pytest.mark.beside_others  # input checks: nothing timed
def test_a_bad_argument_is_named_as_given_and_said_once(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_bad="""
import pytest

from test_user import work


def test_bad(contention):
    contention(work, bubbles=-1)


@pytest.mark.contention(bubble=4)
def test_bad_marker(contention):
    contention(work)
""", test_user=USER_TESTS)
    done = pytester.runpytest_subprocess("-q", "-k", "test_bad", "--contention-dir", str(tmp_path / "runs"))
    done.assert_outcomes(failed=2)
    out = done.stdout.str()
    assert ": bubbles: " in out and "sweep.values" not in out, out
    assert "During handling of the above exception" not in out, out
    # a misspelt marker argument is refused, not run with the default pressure
    assert "@pytest.mark.contention: unknown argument(s) bubble;" in out, out
    assert not (tmp_path / "runs" / "test_bad.test_bad_marker").exists()


def test_a_run_name_is_unique_per_test_and_leaves_room_for_the_call_number() -> None:
    from bubbleup.pytest_plugin import _slug

    assert _slug("test_user.test_quiet") == "test_user.test_quiet"  # a plain name stays itself: baselines keep
    long = "tests.test_models.test_latency_beside_memory_bubbles_" + "x" * 60
    a, b = _slug(long + "[resnet-fp32]"), _slug(long + "[resnet-fp16]")
    assert a != b and len(a) <= 88 and len(b) <= 88
    assert _slug("m.test[a b]") != _slug("m.test[a_b]")  # replaced characters alone do not merge two cases


def test_a_package_inits_function_is_imported_from_above_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from bubbleup.pytest_plugin import _target

    package = tmp_path / "src" / "mypkg_for_target_test"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("def work():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    module = importlib.import_module("mypkg_for_target_test")
    assert _target(module.work) == ("mypkg_for_target_test:work", str((tmp_path / "src").resolve()))
