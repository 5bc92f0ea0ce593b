"""Where things are in a run directory, and which schema it follows: the one place these names are spelled.

Layout (README "Run directory")::

    manifest.json   scenario as given and effective, plan, environment, status, schema version
    samples.csv     one row per inference (records.SampleRow)
    points.csv      one row per point x workload x setting step (records.PointRow)
    telemetry.csv   machine samples during each point (columns fixed per run in the manifest)
    bubbles.csv     one row per point x bubble: targets and what each bubble delivered (records.BubbleRow;
                    absent from runs written before it existed)
    worker.log      everything the workload processes wrote to stderr
    sensitivity.csv a size sweep's sensitivity curves (analysis.sensitivity.COLUMNS), written at the end
    report.html     written at the end
    .space-reserve  a few KiB held while the run writes, given back on a failed write so the
                    manifest can still say what happened on a full disk
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

#: The run-directory schema this bubbleup writes (defined once, in ``bubbleup/__init__.py``). Readers
#: accept it and refuse newer ones. Version 1 grew only by optional manifest fields, so a directory
#: written by any version-1 bubbleup loads.
from bubbleup import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "default_run_dir", "is_run_dir", "now_iso"]

MANIFEST = "manifest.json"
SAMPLES = "samples.csv"
POINTS = "points.csv"
TELEMETRY = "telemetry.csv"
BUBBLES = "bubbles.csv"
WORKER_LOG = "worker.log"
REPORT = "report.html"
#: A size sweep's sensitivity curves (analysis.sensitivity.COLUMNS).
SENSITIVITY = "sensitivity.csv"
#: A campaign directory's index page, linking each run's report.
CAMPAIGN_INDEX = "index.html"
RESERVE = ".space-reserve"
#: Files whose rows belong to a point and are written before its point rows (the commit marker).
POINT_DATA = (TELEMETRY, BUBBLES, SAMPLES)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def default_run_dir(reports_root: Path, name: str) -> Path:
    """``reports_root/<name>/<timestamp>``, with a suffix when two runs start in the same second."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = reports_root / name / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = reports_root / name / f"{stamp}-{suffix}"
    return path


def is_run_dir(path: Path) -> bool:
    try:
        return (path / MANIFEST).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: no run directory there
        return False
