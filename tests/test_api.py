"""The public API works as the README shows it: the README's own example is run, on the smoke scenario."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, smoke_dict, write_scenario

import bubbleup
from bubbleup.errors import UserError

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_and_reads_back_what_the_cli_writes(tmp_path: Path) -> None:
    code = readme_example().replace('reports_root="reports"', f"reports_root={str(tmp_path)!r}")
    code = code.replace("scenarios/smoke.yaml", str(ROOT / "scenarios" / "smoke.yaml"))
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(compile(code, "README.md", "exec"), {})
    printed = shown.getvalue()
    assert printed.startswith("complete") and "median_ms" in printed
    (made,) = (tmp_path / "smoke").iterdir()  # a run directory of its own, so the example runs again as written
    run = bubbleup.load_run(made)
    assert (made / "report.html").is_file()
    assert [c.setting for c in bubbleup.find_cliffs(run)] == ["ws256k", "ws2048k"]
    assert all(c.sentence() in printed for c in bubbleup.find_cliffs(run))
    summary = bubbleup.summarise(run)
    points = pd.read_csv(made / "points.csv")
    shipped = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    repeats, n = shipped["sweep"]["repeats"], shipped["workload"]["inferences_per_setting"]
    assert len(summary) == 3 * 2 and len(points) == 3 * 2 * repeats and set(summary["n"]) == {n * repeats}
    assert run.manifest.statistics is not None and "order statistics" in run.manifest.statistics["median_ci"]


def test_a_scenario_built_from_a_dict_runs_and_records_itself_as_given(tmp_path: Path) -> None:
    scenario = bubbleup.Scenario.from_yaml(write_scenario(tmp_path, smoke_dict(**{"sweep.values": [0]})))
    run = bubbleup.run(scenario, tmp_path / "out", report=False)
    assert run.status == "complete" and run.manifest.scenario_given == smoke_dict(**{"sweep.values": [0]})
    assert not (tmp_path / "out" / "report.html").exists()


def test_bad_input_through_the_api_is_one_line(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, smoke_dict(**{"sweep.repeats": "two"}))
    with pytest.raises(UserError) as info:
        bubbleup.Scenario.from_yaml(path)
    assert "\n" not in str(info.value) and "sweep.repeats" in str(info.value)


def test_a_scenario_built_or_changed_in_code_is_resolved_and_recorded_as_it_ran(tmp_path: Path) -> None:
    """``Scenario.model_validate`` leaves settings as given ("all"): run resolves it as a file is, where steps
    named "a", "l", "l" once all failed. A copy of a file's scenario with a change records the change, not the
    file (whose data a resume would rebuild)."""
    built = bubbleup.Scenario.model_validate(smoke_dict())
    run = bubbleup.run(built, tmp_path / "built", report=False)
    assert sorted(run.settings) == ["ws256k", "ws64k"] and (run.points["status"] == "ok").all()
    path = write_scenario(tmp_path, smoke_dict())
    changed = bubbleup.Scenario.from_yaml(path).model_copy(update={"name": "changed"})
    assert changed.given["name"] == "changed"
    assert bubbleup.Scenario.from_yaml(path).given == yaml.safe_load(path.read_text())  # unchanged: as the file
    run = bubbleup.run(changed, tmp_path / "changed", report=False)
    assert run.manifest.scenario_given["name"] == "changed"


def test_a_change_made_in_code_resolves_again_as_a_file_would() -> None:
    """What code changes is laid over the file's data, field by field, so the values derived from the file are
    derived again: a cache bubble's size from its LLC share (a copy failed with "sized by llc_fraction"), the
    settings of ``all`` from new options (failed: unknown setting), a precision's batches from a new period."""
    from bubbleup.scenario import scenario_from_dict

    cache = scenario_from_dict(smoke_dict(bubble={"kind": "cache"}), "x.yaml")
    copy = cache.model_copy(update={"description": "changed in code"})
    assert scenario_from_dict(copy.given, "code").bubble.size_mb == cache.bubble.size_mb
    assert "size_mb" not in copy.given["bubble"] and copy.given["description"] == "changed in code"

    plain = scenario_from_dict(smoke_dict(), "x.yaml")
    wider = plain.model_copy(update={"workload": plain.workload.model_copy(
        update={"options": {"working_sets_kb": [512, 4096]}})})  # fmt: skip
    assert scenario_from_dict(wider.given, "code").workload.settings == ["ws512k", "ws4096k"]

    data = smoke_dict(**{"bubble.cpu_duty": 0.5, "workload.precision": {"max_seconds": 5.0}})
    paced = scenario_from_dict(data, "x.yaml")
    slower = paced.model_copy(update={"bubble": paced.bubble.model_copy(update={"period_ms": 200.0})})
    as_file = scenario_from_dict({**data, "bubble": {**data["bubble"], "period_ms": 200.0}}, "file")
    again = scenario_from_dict(slower.given, "code")
    assert again.workload.precision == as_file.workload.precision and again.workload.precision.batch_ms == 200.0
