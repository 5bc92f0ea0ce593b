"""The run directory: append-only, flushed after every point, resumable.

Layout (DESIGN.md section 2)::

    manifest.json   scenario as given and effective, plan, environment, status, schema version
    samples.csv     one row per inference (records.SAMPLE_COLUMNS)
    points.csv      one row per point x workload x setting step (records.POINT_COLUMNS)
    telemetry.csv   machine samples during each point (telemetry.columns(), fixed per run in the manifest)
    worker.log      everything the workload processes wrote to stderr
    report.html     written at the end

A point is committed by appending its telemetry and samples, fsync, then its point
rows, fsync. A crash in between leaves rows without point rows; ``open_for_resume``
removes those orphans, so a resumed run ends with exactly one copy of every row.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bubbleup import SCHEMA_VERSION, __version__
from bubbleup.errors import UserError
from bubbleup.store.records import POINT_COLUMNS, SAMPLE_COLUMNS

MANIFEST = "manifest.json"
SAMPLES = "samples.csv"
POINTS = "points.csv"
TELEMETRY = "telemetry.csv"
#: Files whose rows belong to a point and are written before its point rows (the commit marker).
POINT_DATA = (TELEMETRY, SAMPLES)

PointKey = tuple[int, int]  # (repeat, value)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def default_run_dir(reports_root: Path, name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = reports_root / name / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = reports_root / name / f"{stamp}-{suffix}"
    return path


class RunStore:
    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest

    # -- creation and resumption ------------------------------------------
    @classmethod
    def create(cls, root: Path, manifest: dict[str, Any]) -> RunStore:
        if root.exists() and any(root.iterdir()):
            raise UserError(f"{root}: output directory exists and is not empty (use --resume to continue a run)")
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "bubbleup_version": __version__,
            "status": "running",
            "started_at": now_iso(),
            "finished_at": None,
            **manifest,
        }
        store = cls(root, manifest)
        store.write_manifest()
        files = ((SAMPLES, SAMPLE_COLUMNS), (POINTS, POINT_COLUMNS), (TELEMETRY, manifest["telemetry_columns"]))
        for name, columns in files:
            with open(root / name, "w", newline="") as f:
                csv.writer(f).writerow(columns)
                _sync(f)
        return store

    @classmethod
    def open_for_resume(cls, root: Path) -> RunStore:
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise UserError(f"{root}: not a run directory (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{manifest_path}: unreadable manifest: {exc}") from None
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise UserError(
                f"{manifest_path}: schema_version {manifest.get('schema_version')} cannot be resumed by this "
                f"bubbleup (schema {SCHEMA_VERSION})"
            )
        store = cls(root, manifest)
        store._drop_orphan_rows()
        return store

    def _drop_orphan_rows(self) -> None:
        """Remove sample and telemetry rows of a point whose point rows never made it to disk."""
        done = self.completed_points()
        for name in POINT_DATA:
            path = self.root / name
            if not path.exists():
                continue
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            if not rows:
                continue
            header, body = rows[0], rows[1:]
            r_i, v_i = header.index("repeat"), header.index("value")
            kept = [row for row in body if len(row) == len(header) and (int(row[r_i]), int(row[v_i])) in done]
            if len(kept) != len(body):
                tmp = path.with_suffix(".csv.tmp")
                with open(tmp, "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(header)
                    w.writerows(kept)
                    _sync(f)
                os.replace(tmp, path)

    # -- reading ------------------------------------------------------------
    def completed_points(self) -> set[PointKey]:
        """(repeat, value) of every point whose rows are on disk."""
        path = self.root / POINTS
        if not path.exists():
            return set()
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            return {(int(r["repeat"]), int(r["value"])) for r in reader if r.get("value") not in (None, "")}

    # -- writing ------------------------------------------------------------
    def append_point(self, samples: Iterable[Sequence[Any]], points: Iterable[Sequence[Any]],
                     telemetry: Iterable[Sequence[Any]] = ()) -> None:  # fmt: skip
        """Commit one point: telemetry and samples first, then point rows (the marker), each fsynced."""
        for name, rows in ((TELEMETRY, telemetry), (SAMPLES, samples), (POINTS, points)):
            with open(self.root / name, "a", newline="") as f:
                csv.writer(f).writerows(rows)
                _sync(f)

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.write_manifest()

    def write_manifest(self) -> None:
        path = self.root / MANIFEST
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.manifest, f, indent=2, default=str)
            _sync(f)
        os.replace(tmp, path)


def _sync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())
