"""The run directory contract: a point is committed so a resume never duplicates or loses a row, a failed write
loses nothing, and readers load every schema-1 run and refuse a newer one."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import TESTS, run_cli

import bubbleup
from bubbleup.errors import UserError
from bubbleup.store.manifest import Manifest
from bubbleup.store.reader import load_run
from bubbleup.store.records import DERIVED_SAMPLE_COLUMNS, POINT_COLUMNS, SAMPLE_COLUMNS, PointRow, SampleRow
from bubbleup.store.writer import RunWriter, StoreWriteError

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others

DATA = TESTS / "data"

MANIFEST = Manifest(name="t", telemetry_columns=["repeat", "value", "t_s"])


def sample_row(repeat: int, value: int, i: int) -> SampleRow:
    row = dict.fromkeys(SAMPLE_COLUMNS, 0)
    row.update(repeat=repeat, axis="count", value=value, setting="s", phase="timed", iteration=i, info="")
    return SampleRow(**row)


def point_row(repeat: int, value: int) -> PointRow:
    row = dict.fromkeys(POINT_COLUMNS, 0)
    row.update(repeat=repeat, axis="count", value=value, setting="s", status="ok", error="")
    return PointRow(**row)


def tele(repeat: int, value: int, t: float) -> dict:
    return {"repeat": repeat, "value": value, "t_s": t}


def test_resume_drops_samples_of_a_point_whose_rows_never_landed(tmp_path: Path) -> None:
    store = RunWriter.create(tmp_path / "run", MANIFEST.model_copy(update={"plan": [(0, 0), (0, 1)]}))
    store.append_point([sample_row(0, 0, i) for i in range(5)], [point_row(0, 0)], [tele(0, 0, 0.1)])
    # A crash after the samples of point (0, 1) were written but before its point row:
    store.append_point([sample_row(0, 1, i) for i in range(5)], [], [tele(0, 1, 0.2), tele(0, 1, 0.3)])
    assert len(pd.read_csv(tmp_path / "run" / "samples.csv")) == 10

    resumed = RunWriter.open_for_resume(tmp_path / "run")
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert resumed.completed_points() == {(0, 0)}
    assert len(samples) == 5 and set(samples["value"]) == {0}
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    assert pd.read_csv(tmp_path / "run" / "telemetry.csv")["value"].tolist() == [0]


@pytest.mark.parametrize("left", [b"", b"repeat,ax", None])  # empty, a header cut short, no file at all
def test_a_run_killed_before_its_headers_landed_resumes_with_them(tmp_path: Path, left: bytes | None) -> None:
    """A kill (or a full disk) between the manifest and the files' headers: the resume writes the headers, so the
    rows it appends are read as rows (they were read as a header, and every point measured again was lost)."""
    root = tmp_path / "run"
    RunWriter.create(root, MANIFEST.model_copy(update={"plan": [(0, 0)]}))
    for name in ("samples.csv", "points.csv", "telemetry.csv"):
        if left is None:
            (root / name).unlink()
        else:
            (root / name).write_bytes(left)
    resumed = RunWriter.open_for_resume(root)
    resumed.append_point([sample_row(0, 0, i) for i in range(5)], [point_row(0, 0)], [tele(0, 0, 0.1)])
    assert list(pd.read_csv(root / "samples.csv").columns) == list(SAMPLE_COLUMNS)
    assert len(pd.read_csv(root / "samples.csv")) == 5 and len(pd.read_csv(root / "points.csv")) == 1
    assert RunWriter.open_for_resume(root).completed_points() == {(0, 0)}


def test_a_resume_reads_past_damaged_rows(tmp_path: Path) -> None:
    """A byte that is not UTF-8, or a row whose repeat is not a number, spoils that row: it is dropped (its point
    measured again), and the resume goes on."""
    root = tmp_path / "run"
    store = RunWriter.create(root, MANIFEST.model_copy(update={"plan": [(0, 0), (0, 1)]}))
    store.append_point([sample_row(0, 0, i) for i in range(5)], [point_row(0, 0)], [tele(0, 0, 0.1)])
    store.append_point([sample_row(0, 1, i) for i in range(5)], [point_row(0, 1)], [tele(0, 1, 0.2)])
    points = (root / "points.csv").read_bytes().splitlines(keepends=True)
    (root / "points.csv").write_bytes(b"".join([*points[:-1], b"\xff" + points[-1][1:]]))  # point (0, 1) damaged
    samples = (root / "samples.csv").read_bytes().splitlines(keepends=True)
    (root / "samples.csv").write_bytes(b"".join([*samples, b"x" + samples[-1][1:]]))
    resumed = RunWriter.open_for_resume(root)
    assert resumed.completed_points() == {(0, 0)}
    assert set(pd.read_csv(root / "samples.csv")["value"]) == {0}


def test_resume_measures_again_a_point_whose_rows_landed_only_in_part(tmp_path: Path) -> None:
    """A kill inside a point's batch of rows (several syscalls once it passes a buffer) leaves some of its rows,
    the last one perhaps without its newline. Any row used to mark the point complete, and the next row written
    was glued onto the cut line and lost."""
    from bubbleup.store.manifest import StepEntry

    steps = [StepEntry(workload="w", setting=s, warmup=0, inferences=5) for s in ("a", "b")]
    plan = [(0, 0), (0, 1), (0, 2)]
    store = RunWriter.create(tmp_path / "run", MANIFEST.model_copy(update={"plan": plan, "steps": steps}))
    for value in (0, 1, 2):
        store.append_point([sample_row(0, value, i) for i in range(5)], [point_row(0, value), point_row(0, value)])
    path = tmp_path / "run" / "points.csv"
    whole = path.read_bytes()
    cut = whole.rstrip(b"\r\n")  # point (0, 2): both rows there, the last without its newline
    path.write_bytes(cut)
    resumed = RunWriter.open_for_resume(tmp_path / "run")
    assert resumed.completed_points() == {(0, 0), (0, 1)}
    assert set(pd.read_csv(tmp_path / "run" / "samples.csv")["value"]) == {0, 1}  # its samples go with it
    resumed.append_point([sample_row(0, 2, i) for i in range(5)], [point_row(0, 2), point_row(0, 2)])
    assert pd.read_csv(path)["value"].tolist() == [0, 0, 1, 1, 2, 2]
    # one row of two on disk (a kill between the two rows): not complete either
    path.write_bytes(whole[: whole.rstrip(b"\r\n").rfind(b"\n") + 1])
    assert RunWriter.open_for_resume(tmp_path / "run").completed_points() == {(0, 0), (0, 1)}


def test_a_run_shipped_to_a_ray_host_for_resume_is_left_as_shipped(tmp_path: Path) -> None:
    """The host streams a resumed run's growth from the lengths it was shipped; its resume used to shorten the
    files first (a point's orphan rows dropped), so the campaign's copy kept the orphans and missed rows."""
    from bubbleup import campaign_ray

    store = RunWriter.create(tmp_path / "run", MANIFEST.model_copy(update={"plan": [(0, 0), (0, 1)]}))
    store.append_point([sample_row(0, 0, i) for i in range(5)], [point_row(0, 0)], [tele(0, 0, 0.1)])
    store.append_point([sample_row(0, 1, i) for i in range(5)], [], [tele(0, 1, 0.2)])  # the host died here
    files = campaign_ray.resume_files(tmp_path / "run")
    assert files is not None and set(pd.read_csv(tmp_path / "run" / "samples.csv")["value"]) == {0}
    host = tmp_path / "host"
    host.mkdir()
    for name, data in files.items():
        (host / name).write_bytes(data)
    RunWriter.open_for_resume(host)
    for name in campaign_ray.APPENDED:
        if name in files:
            assert (host / name).read_bytes() == files[name], name
    assert campaign_ray.resume_files(tmp_path / "missing") is None


def test_manifest_carries_schema_and_status(tmp_path: Path) -> None:
    RunWriter.create(tmp_path / "run", MANIFEST)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["status"] == "running" and manifest["bubbleup_version"]


def test_refuses_to_overwrite_a_run_and_to_resume_a_non_run(tmp_path: Path) -> None:
    RunWriter.create(tmp_path / "run", MANIFEST)
    with pytest.raises(UserError, match="not empty"):
        RunWriter.create(tmp_path / "run", MANIFEST)
    with pytest.raises(UserError, match="not a run directory"):
        RunWriter.open_for_resume(tmp_path)


def test_a_failed_write_cuts_every_file_back_and_names_the_file(tmp_path: Path) -> None:
    store = RunWriter.create(tmp_path / "run", MANIFEST.model_copy(update={"plan": [(0, 0), (0, 1)]}))
    store.append_point([sample_row(0, 0, i) for i in range(5)], [point_row(0, 0)], [tele(0, 0, 0.1)])
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("telemetry.csv", "points.csv")}
    # A real OS failure, no mock: samples.csv is replaced by a directory, so appending to it fails
    # after telemetry.csv (written first) has already taken the point's rows.
    (tmp_path / "run" / "samples.csv").unlink()
    (tmp_path / "run" / "samples.csv").mkdir()
    with pytest.raises(StoreWriteError, match=r"samples\.csv: write failed: Is a directory"):
        store.append_point([sample_row(0, 1, i) for i in range(5)], [point_row(0, 1)], [tele(0, 1, 0.2)])
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    assert not (tmp_path / "run" / ".space-reserve").exists()  # given back so the manifest can still be written
    store.finish("interrupted", "disk trouble")
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "interrupted"


def test_a_run_written_before_the_typed_contract_still_loads() -> None:
    run = load_run(DATA / "run-schema1")
    assert run.manifest.schema_version == 1 and run.status == "complete" and run.name == "smoke"
    assert run.settings == ["ws256k", "ws2048k"] and run.plan == [(0, 0.0), (0, 1.0), (0, 2.0)]
    assert list(run.samples.columns) == [*SAMPLE_COLUMNS, *DERIVED_SAMPLE_COLUMNS]  # correct: derived from info
    assert list(run.points.columns) == list(POINT_COLUMNS)
    assert len(run.points) == 6 and (run.points["status"] == "ok").all()
    assert len(bubbleup.find_cliffs(run)) == 2 and run.notes == ()


def test_a_run_of_the_first_schema_1_form_loads() -> None:
    """The first commits wrote steps without their workload and the workload's metadata flat (this directory was
    written by the project's first commit); every schema-1 directory loads, as layout.py promises."""
    run = load_run(DATA / "run-schema1-first")
    assert run.manifest.schema_version == 1 and run.status == "complete"
    assert [s.workload for s in run.manifest.steps] == ["synthetic", "synthetic"]
    assert run.manifest.workload_metadata == {"synthetic": {"numpy": "2.4.6"}}
    assert len(run.points) == 6 and len(bubbleup.find_cliffs(run)) == 2


def test_resuming_a_run_of_an_older_version_gives_its_files_todays_columns(tmp_path: Path) -> None:
    """A run begun before samples.csv had e.g. ``speed_ns``: on resume the files get today's header (old rows kept,
    new columns empty), so rows appended by position land under their names and every row still loads."""
    run_dir = tmp_path / "old"
    shutil.copytree(DATA / "run-schema1", run_dir)
    before = load_run(run_dir)
    store = RunWriter.open_for_resume(run_dir)
    with open(run_dir / "samples.csv", newline="") as f:
        assert next(csv.reader(f)) == list(SAMPLE_COLUMNS)
    store.append_point([sample_row(9, 7, i) for i in range(3)], [point_row(9, 7)])
    after = load_run(run_dir)
    old_rows = after.samples[after.samples["repeat"] != 9]
    assert len(old_rows) == len(before.samples) and old_rows["speed_ns"].isna().all()
    assert old_rows["latency_ms"].tolist() == before.samples["latency_ms"].tolist()
    new_rows = after.samples[after.samples["repeat"] == 9]
    assert len(new_rows) == 3 and (new_rows["iteration"].tolist() == [0, 1, 2])
    # a column this version does not know: a newer writer's run, refused
    (run_dir / "points.csv").write_text("repeat,value,from_the_future\n0,0,1\n")
    with pytest.raises(UserError, match="from_the_future are not this version's"):
        RunWriter.open_for_resume(run_dir)


def test_a_future_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "future"
    shutil.copytree(DATA / "run-schema1", run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError) as info:
        load_run(run_dir)
    message = str(info.value)
    assert "\n" not in message and "schema_version: 99 is newer" in message and "manifest.json" in message
    done = run_cli(["report", str(run_dir)], cwd=tmp_path)
    assert done.returncode == 2 and "schema_version: 99" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(UserError, match="schema_version: 99"):
        RunWriter.open_for_resume(run_dir)


def test_a_wrongly_typed_manifest_field_is_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "bad"
    shutil.copytree(DATA / "run-schema1", run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["plan"] = "all of it"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"manifest\.json: plan: "):
        load_run(run_dir)


@pytest.mark.parametrize("verdict", [{"valid": True, "reasons": "x"}, {"valid": "yes"}, {"valid": 0, "reasons": [1]}])
def test_a_recorded_verdict_of_the_wrong_shape_is_one_line(tmp_path: Path, verdict: dict) -> None:
    """report, compare and resume read the recorded verdict: one of the wrong shape is named, not a traceback."""
    run_dir = tmp_path / "run"
    shutil.copytree(DATA / "run-schema1", run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "validity": verdict}))
    with pytest.raises(UserError, match=r"manifest.json: validity: "):
        load_run(run_dir)
