"""The one writer of a run directory: append-only, a point committed at a time, resumable.

A point is committed by appending its telemetry and samples, fsync, then its point rows,
fsync. A crash in between leaves rows without point rows; ``open_for_resume`` removes those
orphans, so a resumed run ends with exactly one copy of every row.

A write that fails (disk full, file system gone read-only) raises :class:`StoreWriteError`
naming the file and the cause, after cutting every file back to where the point began: the
completed points stay intact and no half-written row is left behind. A small reserve file is
given back first, so that the manifest can still record that the run was interrupted.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from bubbleup.errors import RunFailed, UserError
from bubbleup.store import manifest as manifest_io
from bubbleup.store.layout import BUBBLES, MANIFEST, POINT_DATA, POINTS, RESERVE, SAMPLES, TELEMETRY, now_iso
from bubbleup.store.manifest import Manifest
from bubbleup.store.records import (
    BUBBLE_COLUMNS,
    POINT_COLUMNS,
    SAMPLE_COLUMNS,
    BubbleRow,
    PointRow,
    SampleRow,
    TelemetryRow,
    as_row,
    telemetry_row,
)

PointId = tuple[int, int]  # (repeat, value)
RESERVE_BYTES = 64 * 1024


class StoreWriteError(RunFailed):
    """A write to the run directory failed; the message names the file and the cause."""


class _Write(Protocol):
    """Writes rows to an open CSV file (a protocol, not a Callable, so lambdas with bound defaults fit)."""

    def __call__(self, f: IO[str], /) -> object: ...


class RunWriter:
    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    # -- creation and resumption ------------------------------------------
    @classmethod
    def create(cls, root: Path, manifest: Manifest) -> RunWriter:
        if root.exists() and not root.is_dir():
            raise UserError(f"{root}: exists and is not a directory; --out names the run directory to create")
        if root.exists() and any(root.iterdir()):
            raise UserError(f"{root}: output directory exists and is not empty (use --resume to continue a run)")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{root}: cannot create the run directory: {exc.strerror or exc}") from None
        manifest = manifest.model_copy(update={"status": "running", "started_at": now_iso(), "finished_at": None})
        store = cls(root, manifest)
        store.write_manifest()
        files = ((SAMPLES, SAMPLE_COLUMNS), (POINTS, POINT_COLUMNS), (TELEMETRY, manifest.telemetry_columns),
                 (BUBBLES, BUBBLE_COLUMNS))  # fmt: skip
        for name, cols in files:
            store._guarded(name, lambda f, cols=cols: csv.writer(f).writerow(cols), mode="w")
        store._hold_reserve()
        return store

    @classmethod
    def open_for_resume(cls, root: Path) -> RunWriter:
        store = cls(root, manifest_io.read(root / MANIFEST))
        store.tidy()
        store._hold_reserve()
        return store

    def tidy(self) -> None:
        """What a resume does to the files before measuring again: today's columns, and no row of a point that did
        not fully land. Done again on the same files it changes nothing (a Ray campaign tidies its copy before
        shipping it, so that the host's resume leaves the shipped bytes as they are and streaming from their
        lengths stays right)."""
        self._write_missing_headers()
        self._upgrade_headers()
        self._drop_cut_points()
        self._drop_orphan_rows()

    def _write_missing_headers(self) -> None:
        """A run killed (or out of disk) between its manifest and its files' headers left files missing, empty, or
        with a header cut short: give them their header, or rows appended now would be read as a header and lost."""
        for name, columns in ((SAMPLES, SAMPLE_COLUMNS), (POINTS, POINT_COLUMNS),
                              (TELEMETRY, self.manifest.telemetry_columns)):  # fmt: skip
            path = self.root / name
            data = path.read_bytes() if path.exists() else b""
            if b"\n" not in data:  # nothing, or not even one whole line: no row can have been committed
                self._guarded(name, lambda f, cols=columns: csv.writer(f).writerow(cols), mode="w")

    def _upgrade_headers(self) -> None:
        """Give samples.csv and points.csv of a run begun by an older version today's columns (new ones empty,
        which the reader reads as NaN), so that rows written from here on, by position, land under their names.
        A column this version does not know means a newer writer: refused, nothing touched."""
        for name, columns in ((SAMPLES, SAMPLE_COLUMNS), (POINTS, POINT_COLUMNS)):
            rows = _read_rows(self.root / name)
            if not rows or tuple(rows[0]) == tuple(columns):
                continue
            path = self.root / name
            header, body = rows[0], rows[1:]
            unknown = [c for c in header if c not in columns]
            if unknown:
                raise UserError(f"{path}: columns {', '.join(unknown)} are not this version's: the run was written by "
                                f"a newer bubbleup; resume it with that one")  # fmt: skip
            where = {c: i for i, c in enumerate(header)}
            upgraded = [[row[where[c]] if c in where and where[c] < len(row) else "" for c in columns]
                        for row in body if len(row) == len(header)]  # fmt: skip
            _replace_rows(path, list(columns), upgraded)

    def _drop_cut_points(self) -> None:
        """Remove the point rows of a point whose rows did not all reach the disk: a kill inside a large points
        batch (written in several syscalls) or a cut last line. Any row would mark the point complete, and a
        line without its newline would glue the next row onto it; the point is measured again instead."""
        path = self.root / POINTS
        rows = _read_rows(path)
        if len(rows) < 2:
            return
        header, body = rows[0], rows[1:]
        if not path.read_bytes().endswith(b"\n"):
            body = body[:-1]  # the writer ends every row with a newline: a last line without one was cut
        r_i, v_i = header.index("repeat"), header.index("value")
        whole = [row for row in body if len(row) == len(header) and row[r_i].isdigit() and row[v_i].isdigit()]
        per_point = Counter((row[r_i], row[v_i]) for row in whole)
        expected = len(self.manifest.steps)  # one row per step of every point; unknown (0) for old runs
        kept = [row for row in whole if not expected or per_point[(row[r_i], row[v_i])] == expected]
        if len(kept) != len(rows) - 1:
            _replace_rows(path, header, kept)

    def _drop_orphan_rows(self) -> None:
        """Remove sample and telemetry rows of a point whose point rows never made it to disk."""
        done = self.completed_points()
        for name in POINT_DATA:
            rows = _read_rows(self.root / name)
            if not rows:
                continue
            header, body = rows[0], rows[1:]
            r_i, v_i = header.index("repeat"), header.index("value")
            kept = [row for row in body if len(row) == len(header) and row[r_i].isdigit() and row[v_i].isdigit()
                    and (int(row[r_i]), int(row[v_i])) in done]  # fmt: skip
            if len(kept) != len(body):
                _replace_rows(self.root / name, header, kept)

    # -- reading ------------------------------------------------------------
    def completed_points(self) -> set[PointId]:
        """(repeat, value) of every point whose rows are on disk."""
        path = self.root / POINTS
        if not path.exists():
            return set()
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            return {(int(r["repeat"]), int(r["value"])) for r in reader if r.get("value") not in (None, "")}

    # -- writing ------------------------------------------------------------
    def append_point(self, samples: Sequence[SampleRow], points: Sequence[PointRow],
                     telemetry: Iterable[TelemetryRow] = (), bubbles: Sequence[BubbleRow] = ()) -> None:  # fmt: skip
        """Commit one point: telemetry, bubbles and samples first, then point rows (the marker), each fsynced.

        A run begun before bubbles.csv existed (resumed by this version) gets the file, with its header,
        at its first new point; its earlier points simply have no bubble rows.

        On a failed write every file is cut back to its length before this point, then
        :class:`StoreWriteError` says which file failed and why.
        """
        cols = self.manifest.telemetry_columns
        header: list[Sequence[Any]] = [BUBBLE_COLUMNS] if _size(self.root / BUBBLES) == 0 else []
        batches: list[tuple[str, list[Sequence[Any]]]] = [
            (TELEMETRY, [telemetry_row(t, cols) for t in telemetry]),
            (BUBBLES, [*header, *(as_row(b) for b in bubbles)] if bubbles else []),
            (SAMPLES, [as_row(s) for s in samples]),
            (POINTS, [as_row(p) for p in points]),
        ]
        batches = [(name, rows) for name, rows in batches if rows or name != BUBBLES]  # no empty bubbles.csv
        sizes = {name: _size(self.root / name) for name, _ in batches}
        try:
            for name, rows in batches:
                self._guarded(name, lambda f, rows=rows: csv.writer(f).writerows(rows))
        except StoreWriteError:
            for name, size in sizes.items():
                with contextlib.suppress(OSError):
                    os.truncate(self.root / name, size)
            raise

    def _guarded(self, name: str, write: _Write, mode: str = "a") -> None:
        path = self.root / name
        try:
            with open(path, mode, newline="") as f:
                write(f)
                _sync(f)
        except OSError as exc:
            self.release_reserve()
            raise StoreWriteError(f"{path}: write failed: {exc.strerror or exc}; completed points are kept") from None

    def update_manifest(self, **fields: Any) -> None:
        self.manifest = Manifest.model_validate({**self.manifest.model_dump(), **fields})
        self.write_manifest()

    def write_manifest(self) -> None:
        """Replace the manifest atomically (a copy, fsynced, renamed over it: never a half-written manifest); on a
        full disk, give the reserve back and try once more the same way."""
        path = self.root / MANIFEST
        text = self.manifest.to_json()
        tmp = path.with_suffix(".json.tmp")
        first: OSError | None = None
        for _attempt in range(2):
            try:
                with open(tmp, "w") as f:
                    f.write(text)
                    _sync(f)
                os.replace(tmp, path)
                return
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                first = first or exc
                self.release_reserve()
        assert first is not None
        raise StoreWriteError(f"{path}: write failed: {first.strerror or first}")

    def _hold_reserve(self) -> None:
        with contextlib.suppress(OSError), open(self.root / RESERVE, "wb") as f:
            f.write(b"\0" * RESERVE_BYTES)
            _sync(f)

    def release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            (self.root / RESERVE).unlink()

    def finish(self, status: str, reason: str | None = None) -> None:
        """Record how the run ended and give the reserve back."""
        self.release_reserve()
        self.update_manifest(status=status, finished_at=now_iso(), stop_reason=reason)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_rows(path: Path) -> list[list[str]]:
    """Every row of a contract CSV, header first ([] when the file is missing or empty)."""
    if not path.exists():
        return []
    with open(path, newline="", errors="replace") as f:  # a damaged byte spoils its row, not the resume
        return list(csv.reader(f))


def _replace_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Rewrite ``path`` as ``header`` and ``rows``, atomically: a copy, fsynced, then renamed over it."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
        _sync(f)
    os.replace(tmp, path)


def _sync(f: IO[Any]) -> None:
    f.flush()
    os.fsync(f.fileno())
