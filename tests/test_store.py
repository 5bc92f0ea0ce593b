"""The run store commits a point atomically enough that a resume never duplicates or loses a row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bubbleup.errors import UserError
from bubbleup.store.records import POINT_COLUMNS, SAMPLE_COLUMNS
from bubbleup.store.writer import RunStore

MANIFEST = {"plan": [], "name": "t", "telemetry_columns": ["repeat", "value", "t_s"]}


def sample_row(repeat: int, value: int, i: int) -> list:
    row = dict.fromkeys(SAMPLE_COLUMNS, 0)
    row.update(repeat=repeat, axis="count", value=value, setting="s", phase="timed", iteration=i, info="")
    return list(row.values())


def point_row(repeat: int, value: int) -> list:
    row = dict.fromkeys(POINT_COLUMNS, 0)
    row.update(repeat=repeat, axis="count", value=value, setting="s", status="ok", error="")
    return list(row.values())


def test_resume_drops_samples_of_a_point_whose_rows_never_landed(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", {**MANIFEST, "plan": [[0, 0], [0, 1]]})
    store.append_point([sample_row(0, 0, i) for i in range(5)], [point_row(0, 0)], [[0, 0, 0.1]])
    # A crash after the samples of point (0, 1) were written but before its point row:
    store.append_point([sample_row(0, 1, i) for i in range(5)], [], [[0, 1, 0.2], [0, 1, 0.3]])
    assert len(pd.read_csv(tmp_path / "run" / "samples.csv")) == 10

    resumed = RunStore.open_for_resume(tmp_path / "run")
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert resumed.completed_points() == {(0, 0)}
    assert len(samples) == 5 and set(samples["value"]) == {0}
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    assert pd.read_csv(tmp_path / "run" / "telemetry.csv")["value"].tolist() == [0]


def test_manifest_carries_schema_and_status(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run", MANIFEST)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["status"] == "running" and manifest["bubbleup_version"]


def test_refuses_to_overwrite_a_run_and_to_resume_a_non_run(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run", MANIFEST)
    with pytest.raises(UserError, match="not empty"):
        RunStore.create(tmp_path / "run", MANIFEST)
    with pytest.raises(UserError, match="not a run directory"):
        RunStore.open_for_resume(tmp_path)
