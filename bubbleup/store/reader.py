"""The one reader of a run directory: ``load_run`` gives the manifest model and typed frames.

It tolerates a partial run (a missing or empty CSV becomes an empty frame, a row cut short by
a kill is dropped, each noted in ``Run.notes``), so a report can be rebuilt from any run
directory, including an interrupted one, long after the run. It refuses, in one line, a run
directory written to a newer schema than this bubbleup knows.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bubbleup.store import manifest as manifest_io
from bubbleup.store.layout import BUBBLES, MANIFEST, POINTS, SAMPLES, TELEMETRY
from bubbleup.store.manifest import Manifest
from bubbleup.store.records import (
    BUBBLE_COLUMNS,
    BUBBLE_TEXT,
    POINT_COLUMNS,
    POINT_TEXT,
    SAMPLE_COLUMNS,
    SAMPLE_TEXT,
    STATUS_OK,
    corrects,
)


@dataclass(frozen=True)
class Run:
    """A run directory read into memory; immutable so figures and tables see the same data."""

    path: Path
    manifest: Manifest
    samples: pd.DataFrame  # samples.csv (records.SampleRow columns)
    points: pd.DataFrame  # points.csv (records.PointRow columns)
    telemetry: pd.DataFrame | None = None
    notes: tuple[str, ...] = field(default=())  # problems met while reading (bad rows, missing files)
    #: Planned curves in run order: setting names, or ``workload:setting`` when a run measures several workloads.
    planned: tuple[str, ...] = field(default=())
    workloads: tuple[str, ...] = field(default=())  # workload labels, in the manifest's order
    #: bubbles.csv (records.BubbleRow columns): None for a run written before it existed.
    bubbles: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return self.manifest.name or self.path.name

    @property
    def status(self) -> str:
        return self.manifest.status

    @property
    def effective(self) -> dict[str, Any]:
        return dict(self.manifest.scenario_effective)

    @property
    def axis(self) -> str:
        """``count`` or ``size_mb``: from the effective scenario, else from the data."""
        sweep = self.effective.get("sweep") or {}
        if sweep.get("axis"):
            return str(sweep["axis"])
        for frame in (self.points, self.samples):
            if len(frame) and "axis" in frame:
                return str(frame["axis"].iloc[0])
        return "count"

    @property
    def settings(self) -> list[str]:
        """Every curve (setting, or ``workload:setting``) in the manifest's order, then any others in the data."""
        names = list(self.planned)
        for frame in (self.points, self.samples):
            if "setting" in frame:
                names.extend(str(s) for s in frame["setting"].dropna().unique())
        return list(dict.fromkeys(names))

    @property
    def plan(self) -> list[tuple[int, float]]:
        """Planned (repeat, value) points in execution order."""
        return [(int(r), float(v)) for r, v in self.manifest.plan]

    @property
    def values(self) -> list[float]:
        """Planned sweep values (sorted), plus any found in the data."""
        vals = [v for _, v in self.plan]
        vals += [float(v) for v in (self.effective.get("sweep") or {}).get("values") or []]
        vals += [float(v) for v in self.points.get("value", pd.Series(dtype=float)).dropna()]
        return sorted(set(vals))

    @property
    def bubble(self) -> dict[str, Any]:
        """The effective single bubble (empty for a ``bubbles:`` set)."""
        return dict(self.effective.get("bubble") or {})

    @property
    def set_size(self) -> int:
        """Bubbles per set: the kinds of a ``bubbles:`` set, started together, counted as one (1 for a ``bubble``)."""
        return len(self.effective.get("bubbles") or []) or 1

    @property
    def sweep_count(self) -> int | None:
        """Bubbles per point on a size sweep (``sweep.count`` counts sets; a set of k kinds is k bubbles)."""
        count = (self.effective.get("sweep") or {}).get("count")
        if count is None:
            return None
        return int(count) * self.set_size

    @property
    def fixed_size_mb(self) -> float:
        """Each bubble's region on a count sweep: the single bubble's, else the set's largest."""
        given = [b.get("size_mb") for b in ([self.bubble] if self.bubble else self.effective.get("bubbles") or [])]
        sizes = [float(s) for s in given if s is not None]
        return max(sizes) if sizes else math.nan


#: How a note says a file could not be read at all (a manifest, a CSV): analysis.validity's ``damaged``.
UNREADABLE = ("is not valid JSON", "could not be parsed")


def _read_csv(path: Path, columns: Sequence[str], text: Iterable[str], notes: list[str],
              only: bool = False) -> pd.DataFrame:  # fmt: skip
    """Read a contract CSV leniently: a missing, empty or truncated file gives what it can, never an exception.

    A run killed mid-write may leave a partial last line; numeric columns are coerced so
    such a row turns into NaNs (dropped later) instead of poisoning a column's dtype.
    """
    text = tuple(text)
    empty = pd.DataFrame({c: pd.Series(dtype=object if c in text else float) for c in columns})
    if not path.exists():
        notes.append(f"{path.name} is missing")
        return empty
    wanted = set(columns)

    def read(source: Any) -> pd.DataFrame:
        return pd.read_csv(source, dtype={c: str for c in text}, keep_default_na=True, on_bad_lines="skip",
                           usecols=(lambda c: c in wanted) if only else None)  # fmt: skip

    try:
        whole = path.read_bytes()
        if whole and not whole.endswith(b"\n"):
            # The writer ends every row with a newline: a last line without one was cut (a kill mid-write), and
            # read as it stands it would be a row with its last fields missing, a point that never landed.
            whole = whole[: whole.rfind(b"\n") + 1]
            notes.append(f"{path.name}: its last line was cut short and is left out")
        try:
            frame = read(io.BytesIO(whole))
        except pd.errors.ParserError:
            # A SIGKILL inside a quoted field (samples.csv's ``info``) leaves a quote open to the end of the file,
            # and pandas then refuses all of it: drop the cut line and read the complete ones.
            frame = read(io.BytesIO(whole[: whole.rstrip(b"\n").rfind(b"\n") + 1]))
            notes.append(f"{path.name}: its last line was cut short and is left out")
    except pd.errors.EmptyDataError:
        notes.append(f"{path.name} is empty")
        return empty
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        notes.append(f"{path.name} {UNREADABLE[1]}: {exc}")
        return empty
    for col in columns:
        if col not in frame:
            frame[col] = pd.Series(dtype=object if col in text else float)
    # The contract's column order, whatever order (or version) the file was written in; extras last.
    frame = frame[[*columns, *(c for c in frame.columns if c not in columns)]]
    for col in frame.columns:
        if col not in text:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
        else:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame


def _read_manifest(path: Path, notes: list[str]) -> Manifest:
    """The manifest model; a missing or broken file is noted (the data may still tell a story), a newer
    schema or a field of the wrong type is refused in one line."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        notes.append(f"{path.name} is missing")
        return Manifest()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{path.name} {UNREADABLE[0]}: {exc}")
        return Manifest()
    return manifest_io.parse(data, path)


def read_points(run_dir: Path, notes: list[str] | None = None) -> pd.DataFrame:
    """points.csv as written (every complete row), for :func:`load_run` and for a run that reads its own."""
    points = _read_csv(run_dir / POINTS, POINT_COLUMNS, POINT_TEXT, [] if notes is None else notes)
    return points.dropna(subset=["value", "status"]).reset_index(drop=True)


#: What joins a sample to its step's row in points.csv, once :func:`load_run` has named every setting by its
#: workload (in the files as written, ``workload`` is part of it too).
STEP_KEY = ("repeat", "value", "step", "setting")


def of_ok_steps(samples: pd.DataFrame, points: pd.DataFrame, key: Sequence[str] = STEP_KEY) -> pd.DataFrame:
    """The samples of steps that finished ok: a step that failed or timed out may have left samples behind,
    which describe a workload in the middle of dying (or a point whose pressure was not held); a step with no
    row in points.csv yet (a run stopped mid-point) is left out too."""
    ok = points.loc[points["status"] == STATUS_OK, list(key)].drop_duplicates()
    return samples.merge(ok, on=list(key), how="inner")


def read_samples(run_dir: Path, notes: list[str] | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """samples.csv as written (every complete row; the contract's columns, or only ``columns``), for
    :func:`load_run` and for a run that reads its own samples while it runs (``sweep.replication``)."""
    wanted = SAMPLE_COLUMNS if columns is None else tuple(dict.fromkeys([*columns, "value", "latency_ms", "t_s"]))
    samples = _read_csv(run_dir / SAMPLES, wanted, SAMPLE_TEXT, [] if notes is None else notes, columns is not None)
    # t_s comes after latency_ms: a row without it was cut short mid-write, so its latency may be cut too
    return samples.dropna(subset=["value", "latency_ms", "t_s"]).reset_index(drop=True)


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory: the manifest model plus samples, points and telemetry as DataFrames."""
    path = Path(run_dir)
    notes: list[str] = []
    manifest = _read_manifest(path / MANIFEST, notes)
    # points.csv before samples.csv: the writer commits a point's samples first, so a live run read in this order
    # never shows a point whose samples are not yet read (analysis.validity checks the counts agree)
    points = read_points(path, notes)
    samples = read_samples(path, notes)
    # derived once here, so every reader of accuracy parses each sample's info once per run, not once per use
    samples["correct"] = pd.Series(corrects(samples["info"]), index=samples.index, dtype=float)
    workloads = _workload_labels(manifest, samples, points)
    planned = _planned_series(manifest, multi=len(workloads) > 1)
    if len(workloads) > 1:  # one curve per (workload, setting): name it so, everywhere downstream
        for frame in (samples, points):
            frame["setting"] = [series_name(w, st) for w, st in zip(frame["workload"], frame["setting"], strict=True)]
    telemetry = None
    if (path / TELEMETRY).exists():
        tnotes: list[str] = []
        telemetry = _read_csv(path / TELEMETRY, ("t_s",), (), tnotes)
        telemetry = telemetry.dropna(subset=["t_s"]).reset_index(drop=True)
        telemetry = telemetry.dropna(axis=1, how="all") if len(telemetry) else None
        notes.extend(n for n in tnotes if "missing" not in n)
    bubbles = None
    if (path / BUBBLES).exists():
        bubbles = _read_csv(path / BUBBLES, BUBBLE_COLUMNS, BUBBLE_TEXT, notes)
        bubbles = bubbles.dropna(subset=["value", "index"]).reset_index(drop=True)
    return Run(
        path=path,
        manifest=manifest,
        samples=samples,
        points=points,
        telemetry=telemetry,
        notes=tuple(notes),
        planned=tuple(planned),
        workloads=tuple(workloads),
        bubbles=bubbles,
    )


def series_name(workload: Any, setting: Any) -> str:
    """A curve's name in a run of several workloads: ``mcdnn:HH`` (settings of different workloads may share names)."""
    return f"{workload}:{setting}" if workload else str(setting)


def _workload_labels(manifest: Manifest, samples: pd.DataFrame, points: pd.DataFrame) -> list[str]:
    labels = [str(w) for w in manifest.workloads]
    for frame in (points, samples):
        labels.extend(str(w) for w in frame["workload"].dropna().unique())
    return list(dict.fromkeys(labels))


def _planned_series(manifest: Manifest, multi: bool) -> list[str]:
    """Curves the run planned, in order: from its steps when several workloads share the run."""
    if multi:
        return list(dict.fromkeys(series_name(st.workload, st.setting) for st in manifest.steps))
    return [str(st) for st in manifest.settings]
