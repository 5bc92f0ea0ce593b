"""Malformed scenarios: one line naming the file, the field and the problem; exit 2; no traceback."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli, smoke_dict, write_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bubbleup import cli
from bubbleup.errors import UserError
from bubbleup.scenario import load_scenario, scenario_from_dict
from bubbleup.sweep.plan import check_memory_safety, plan_points

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others


def mutate(path: str, value: Any) -> dict:
    data = smoke_dict()
    node = data
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return data


DELETE = object()

# (case id, mutation path, value, field expected in the message, words expected in the message)
CASES = [
    ("unknown top-level key", "colour", "blue", "colour", "unknown key"),
    ("unknown nested key", "bubble.sise_mb", 5, "bubble.sise_mb", "unknown key"),
    ("key with a newline", "workload.options", {"\n": None}, "workload.options.'\\n'", "unknown key"),
    ("missing workload", "workload", DELETE, "workload", "required"),
    ("missing sweep axis", "sweep.axis", DELETE, "sweep.axis", "required"),
    ("negative size", "bubble.size_mb", -1, "bubble.size_mb", "greater than or equal to 0"),
    ("size as text", "bubble.size_mb", "256", "bubble.size_mb", "expected a number"),
    # what PyYAML makes of an unsigned exponent: text, and the line says how to write the number
    ("exponent without a dot", "bubble.size_mb", "1e3", "bubble.size_mb", "YAML reads 1e3 as text: write 1.0e+3"),
    ("duty above 1", "bubble.cpu_duty", 1.5, "bubble.cpu_duty", "less than or equal to 1"),
    ("duty below 0", "bubble.cpu_duty", -0.1, "bubble.cpu_duty", "greater than or equal to 0"),
    ("bad pattern", "bubble.pattern", "zigzag", "bubble.pattern", "'none', 'stream', 'random' or 'mixed'"),
    ("empty sweep", "sweep.values", [], "sweep.values", "at least 1"),
    ("negative sweep value", "sweep.values", [0, -2], "sweep.values", "must not be negative"),
    ("repeated sweep value", "sweep.values", [1, 1], "sweep.values", "must not repeat"),
    ("word on a count sweep", "sweep.values", [0, "big"], "sweep.values", "'big' is not a number (a count sweep"),
    ("llc on a count sweep", "sweep.values", [0, "1 llc"], "sweep.values", "for a size_mb sweep only"),
    ("bad axis", "sweep.axis", "duty", "sweep.axis", "'count', 'size_mb' or 'schedule'"),
    ("zero repeats", "sweep.repeats", 0, "sweep.repeats", "greater than or equal to 1"),
    ("bool as number", "sweep.settle_s", True, "sweep.settle_s", "expected a number"),
    ("unknown workload", "workload.kind", "nonexistent", "workload.kind", "unknown workload kind"),
    ("unknown option", "workload.options", {"bogus": 1}, "workload.options.bogus", "unknown key"),
    ("bad option value", "workload.options", {"rounds": 0}, "workload.options.rounds", "greater than or equal"),
    ("negative working set", "workload.options", {"working_sets_kb": [-5]}, "workload.options.working_sets_kb.0",
     "greater than or equal to 1"),
    ("working set twice", "workload.options", {"working_sets_kb": [256, 256]}, "workload.options.working_sets_kb",
     "256 is given twice"),
    ("unknown setting", "workload.settings", ["ws1k"], "workload.settings", "unknown setting 'ws1k'"),
    ("quoted number option", "workload.options", {"rounds": "8"}, "workload.options.rounds", "valid integer"),
    ("boolean for a number", "workload.options", {"working_sets_kb": [True]}, "workload.options.working_sets_kb.0",
     "valid integer"),
    ("negative seed", "workload.options", {"seed": -1}, "workload.options.seed", "greater than or equal to 0"),
    ("setting twice", "workload.settings", ["small", "ws64k"], "workload.settings",
     "'small' and 'ws64k' name the same setting 'ws64k'"),
    ("empty settings", "workload.settings", [], "workload.settings", "at least one setting"),
    ("zero inferences", "workload.inferences_per_setting", 0, "workload.inferences_per_setting", "greater than"),
    ("bad name", "name", "my run/1", "name", "should match pattern"),
    ("bad limit", "limits", {"max_memory_fraction": 2}, "limits.max_memory_fraction", "less than or equal to 1"),
    ("bad restart", "workload.restart", "sometimes", "workload.restart", "'never', 'per_repeat' or 'per_point'"),
    ("nan", "sweep.settle_s", float("nan"), "sweep.settle_s", "must be a finite number (not nan or inf)"),
    ("inf duty", "bubble.cpu_duty", float("inf"), "bubble.cpu_duty", "must be a finite number"),
    ("nan option", "workload.options", {"correct_share": float("nan")}, "workload.options.correct_share", "finite"),
    # a union's forms are not keys of the file: "budget.str" / "settings.list[str]" said pydantic's internals
    ("budget as a list", "budget", [1, 2], "budget", "should be a valid string or a valid dictionary"),
    ("settings as a word", "workload.settings", "some", "workload.settings", "should be a valid list or 'all'"),
]


@pytest.mark.parametrize(("path", "value", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_scenario_is_one_clear_line(tmp_path: Path, capsys, path, value, field, words) -> None:
    file = write_scenario(tmp_path, mutate(path, value))
    assert cli.main(["validate", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {file}: {field}: "), err
    assert words in err


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: [unclosed", "line 1, column 16: invalid YAML: expected ',' or ']'"),
        ("", "the file is empty"),
        ("- a\n- b\n", "mapping"),
        ("name: a\nname: b\n", "line 2, column 1: invalid YAML: key 'name' is given twice"),
        ("name: " + "[" * 1000 + "]" * 1000, "invalid YAML: nested too deeply to read"),
        ("? [a, b]\n: 1\n", "line 1, column 3: invalid YAML: found unhashable key"),
        ("name: a\nseed: " + "9" * 5000 + "\n", "(parse): invalid YAML: Exceeds the limit"),
    ],
    ids=["syntax error", "empty file", "a list", "a key twice", "nested too deeply", "a list as a key", "huge int"],
)
def test_unreadable_yaml_is_one_clear_line(tmp_path: Path, capsys, text: str, words: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    assert cli.main(["validate", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(file) in err and words in err, err


def test_run_refuses_malformed_scenario_as_a_process_without_traceback(tmp_path: Path) -> None:
    file = write_scenario(tmp_path, mutate("bubble.cpu_duty", 3))
    for command in (["run", str(file)], ["validate", str(file)]):
        done = run_cli(command, cwd=tmp_path, timeout=60)
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
        assert "bubble.cpu_duty" in done.stderr
    assert not (tmp_path / "reports").exists()  # nothing was started or written


@pytest.mark.parametrize(("argv", "words"), [
    (["compare", "a"], "error: bubbleup compare: the following arguments are required: run_b"),
    (["frobnicate"], "error: bubbleup: argument COMMAND: invalid choice: 'frobnicate'"),
    (["compare", "a", "b", "--min-effect", "abc"], "argument --min-effect: expected a number, got 'abc'"),
    (["run", "x.yaml", "--", "y"], "unrecognized arguments: y"),  # `--` is argparse's here: only score and predict
                                                                    # take a command after it
])  # fmt: skip
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str], words: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's exit, as `python -m bubbleup` gives it
        cli.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and words in err, err


def test_anchors_and_merge_keys_read_as_yaml_reads_them(tmp_path: Path) -> None:
    text = yaml.safe_dump(smoke_dict(), sort_keys=False).replace("\nbubble:\n", "\nbubble: &b\n", 1)
    assert "&b" in text
    text += "x-other: {<<: *b, cpu_duty: 0.5}\n"  # a merge key beside the anchor (x-other itself is then unknown)
    file = tmp_path / "merge.yaml"
    file.write_text(text)
    with pytest.raises(UserError, match="x-other: unknown key"):  # read fine; the unknown key is the only problem
        load_scenario(file)


def test_a_double_dash_ends_the_options_of_commands_that_take_no_command(tmp_path: Path, capsys) -> None:
    assert cli.main(["validate", "--", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such file" in capsys.readouterr().err
    # score's command may begin before a `--` of its own: everything from its first word is the command
    assert cli.main(["score", "--reporter", str(tmp_path / "none.json"), "xz", "-T1", "--", "file"]) == 2
    assert "calibrate --reporter" in capsys.readouterr().err  # parsed; it stops at the missing reporter curve


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    done = run_cli(["run", str(tmp_path / "nope.yaml")], cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "nope.yaml: no such file" in done.stderr


def test_bubbles_per_point_count_every_bubble_of_a_set() -> None:
    """The 256-bubble cap is per point, so a set of eight bubbles at count 64 is 512; and even bubbles without a
    region hold their process's memory, which the peak counts as the pool does."""
    eight = [{"kind": "cpu"}] * 8
    with pytest.raises(UserError, match=r"sweep\.values: at most 256 bubbles per point \(64 sets of 8 .* 512\)"):
        scenario_from_dict(smoke_dict(bubble=None, bubbles=eight, **{"sweep.values": [0, 64]}), "x.yaml")
    sc = scenario_from_dict(smoke_dict(bubble=None, bubbles=eight, **{"sweep.values": [0, 32]}), "x.yaml")
    assert sc.peak_bubble_mb() == 256 * 32
    with pytest.raises(UserError, match="peak bubble memory 8192 MiB"):
        check_memory_safety(sc, available_mb=10_000, source="x.yaml")


def test_a_reserve_larger_than_the_machine_is_named_as_the_cause() -> None:
    sc = scenario_from_dict(smoke_dict(**{"limits.reserve_mb": 20_000}), "x.yaml")
    with pytest.raises(UserError, match=r"^x\.yaml: limits\.reserve_mb: refusing to run"):
        check_memory_safety(sc, available_mb=10_000, source="x.yaml")


def test_unsafe_peak_memory_is_refused_with_the_numbers() -> None:
    sc = scenario_from_dict(smoke_dict(**{"bubble.size_mb": 4096, "sweep.values": [0, 4]}), "x.yaml")
    expected = r"^x\.yaml: sweep\.values: .*peak bubble memory 16512 MiB \(4 bubbles at count=4\) exceeds "
    expected += "the safe limit of 6000"
    with pytest.raises(UserError, match=expected):
        check_memory_safety(sc, available_mb=10_000, source="x.yaml")
    opted_in = scenario_from_dict(
        smoke_dict(**{"bubble.size_mb": 4096, "sweep.values": [0, 4], "limits": {"allow_unsafe_memory": True}}), "x"
    )
    assert check_memory_safety(opted_in, available_mb=10_000)["peak_bubble_mb"] == 4 * (4096 + 32)  # + processes


def test_unsafe_scenario_exits_2_before_starting_anything(tmp_path: Path) -> None:
    file = write_scenario(tmp_path, smoke_dict(**{"bubble.size_mb": 16 * 1024 * 1024, "sweep.values": [1]}))
    done = run_cli(["run", str(file)], cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "MiB available" in done.stderr
    assert done.stderr.startswith(f"error: {file}: sweep.values: refusing to run") and done.stderr.count("\n") == 1


def test_effective_scenario_resolves_presets_and_fills_defaults(tmp_path: Path) -> None:
    file = write_scenario(tmp_path, mutate("workload.settings", ["large", "ws64k"]))
    sc, given = load_scenario(file)
    assert sc.workload.settings == ["ws256k", "ws64k"]
    assert sc.workload.options["seed"] == 0  # default filled in
    assert given["workload"]["settings"] == ["large", "ws64k"]  # as given stays as given


def test_repeats_alternate_direction() -> None:
    sc = scenario_from_dict(smoke_dict(**{"sweep.values": [4, 0, 2], "sweep.repeats": 3}), "x")
    assert plan_points(sc) == [(0, 0), (0, 2), (0, 4), (1, 4), (1, 2), (1, 0), (2, 0), (2, 2), (2, 4)]


def test_size_sweep_points() -> None:
    sc = scenario_from_dict(smoke_dict(**{"sweep.axis": "size_mb", "sweep.values": [0, 64], "sweep.count": 2}), "x")
    assert sc.points() == [(2, 0), (2, 64)] and sc.peak_bubble_mb() == 2 * (64 + 32)


def test_sizes_relative_to_the_llc_resolve_to_this_machines_cache_and_keep_the_given_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bubbleup.pressure import kinds

    llc = 36  # an LLC of 35.75 MiB (a Xeon 8272CL) rounds to 36
    monkeypatch.setattr(kinds, "llc_bytes", lambda: int(35.75 * (1 << 20)))
    given = smoke_dict(**{"sweep.axis": "size_mb", "sweep.values": [0, llc, "1 llc", "1/2 llc", "4xLLC"]})
    sc = scenario_from_dict(given, "x")
    assert sc.sweep.values == [0, llc, 18, 143]  # "1 llc" lands on the literal 36: one point
    assert sc.given["sweep"]["values"][2:] == ["1 llc", "1/2 llc", "4xLLC"]
    for bad in ("big", "0 llc", "1/0 llc"):  # on a size sweep, a word must be a positive multiple of the LLC
        with pytest.raises(UserError, match=r"^x: sweep\.values: .* is neither a size in MiB nor a positive multiple"):
            scenario_from_dict(smoke_dict(**{"sweep.axis": "size_mb", "sweep.values": [0, bad]}), "x")


def test_shipped_scenarios_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "scenarios"
    files = sorted(root.glob("*.yaml"))
    assert files
    for f in files:
        load_scenario(f)


# Fuzz: arbitrary YAML-ish values spliced anywhere into a valid scenario never produce a traceback.
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
paths = st.sampled_from(
    ["name", "workload", "workload.kind", "workload.settings", "workload.warmup", "workload.options", "bubble",
     "bubble.size_mb", "bubble.pattern", "sweep", "sweep.values", "sweep.axis", "limits", "extra_key"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, value=yaml_values)
def test_fuzzed_scenarios_either_validate_or_fail_in_one_line(tmp_path: Path, capsys, path, value) -> None:
    data = copy.deepcopy(mutate(path, value)) if path != "extra_key" else {**smoke_dict(), "extra_key": value}
    file = tmp_path / "fuzz.yaml"
    file.write_text(yaml.safe_dump(data))
    code = cli.main(["validate", str(file)])
    out = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        assert out.err.count("\n") == 1 and out.err.startswith(f"error: {file}: ")
        assert "Traceback" not in out.err


def test_help_works_for_every_command() -> None:
    """README: "--help works everywhere": every subcommand, the pass-through ones (bubble, train, export) too."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "train", "export", "bubble", "score"} <= set(commands)
    for command in commands:
        done = run_cli([command, "--help"], cwd=ROOT, timeout=60)
        assert done.returncode == 0 and "usage:" in done.stdout, (command, done.stderr)


def test_resume_of_a_file_says_it_is_a_file(tmp_path: Path, capsys) -> None:
    """``run --resume RUN/samples.csv`` said '.../samples.csv/manifest.json: unreadable manifest: Not a directory'."""
    file = tmp_path / "samples.csv"
    file.write_text("repeat,value\n")
    assert cli.main(["run", "--resume", str(file)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {file}: is a file; --resume names the run directory (the one holding manifest.json)\n"


@pytest.mark.parametrize("flag", ["--out", "--calibration"])
def test_resume_refuses_what_it_would_ignore(tmp_path: Path, capsys, flag: str) -> None:
    """A resume continues in place, against the calibration it began with: --out or --calibration beside
    --resume were silently ignored, and the user looked for a run that was never written there."""
    assert cli.main(["run", "--resume", str(tmp_path), flag, str(tmp_path / "x")]) == 2
    said = capsys.readouterr().err
    assert said == f"error: run: {flag} does not apply to --resume, which continues {tmp_path} as it began\n"


def test_a_step_without_its_own_warmup_takes_the_workloads() -> None:
    """``warmup: 5`` beside ``steps:`` was silently 0 for every step that did not repeat it."""
    from bubbleup.sweep.plan import steps_of

    steps = [{"setting": "ws64k", "inferences": 10}, {"setting": "ws256k", "inferences": 10, "warmup": 0}]
    data = smoke_dict(**{"workload.warmup": 5, "workload.steps": steps})
    sc = scenario_from_dict(data, "x.yaml")
    assert [step.warmup for step in steps_of(sc.specs[0])] == [5, 0]
