"""The *dial check* of ``bubbleup calibrate``: does the pressure dial rise monotonically on this machine?

A two-thread reference kernel (the synthetic workload with ``threads: 2`` and matrix-matrix passes, which
release the GIL long enough for the threads to run in parallel; matrix-vector passes did not, and ran
faster on one CPU than on two) is swept over 0-4 full-core bubbles with the default placement, through
the real orchestrator. Its median must not fall as bubbles are added (Bubble-Up's first rule for a
bubble: monotone pressure); a fall beyond both CIs is a warning that count sweeps of multi-threaded
workloads on this machine will be a sawtooth (README "Where bubbles sit"). A run and its analysis, so it
lives above both, not in :mod:`bubbleup.machine`, whose calibration stores its verdict.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bubbleup import api
from bubbleup.analysis.monotone import falls_in
from bubbleup.scenario import scenario_from_dict

#: The dial check's sweep: a two-thread kernel beside 0..4 combined bubbles, default placement.
DIAL_SCENARIO: dict[str, Any] = {
    "name": "calibrate-dial",
    "workload": {"kind": "synthetic", "settings": "all", "inferences_per_setting": 20, "warmup": 3,
                 "precision": {"target": 0.03, "max_inferences": 400, "max_seconds": 2.0},
                 "options": {"working_sets_kb": [1024], "rounds": 12, "columns": 64, "threads": 2}},
    "bubble": {"kind": "combined", "size_mb": 32, "cpu_duty": 1.0, "pattern": "stream"},
    "sweep": {"axis": "count", "values": [0, 1, 2, 3, 4], "repeats": 2, "settle_s": 0.5},
    "telemetry": {"enabled": False},
}  # fmt: skip


def check(out: Path | None = None) -> dict[str, Any]:
    """Sweep the two-thread kernel over 0-4 bubbles and say whether its median ever falls beyond both CIs; the run
    is kept at ``out`` (its report says more than the verdict), in a temporary directory when ``out`` is None."""
    scenario = scenario_from_dict(DIAL_SCENARIO, "calibrate dial check")
    with tempfile.TemporaryDirectory(prefix="bubbleup-dial-") as tmp:
        run = api.run(scenario, out if out is not None else Path(tmp) / "run", report=out is not None)
        summary = api.summarise(run)
        found = falls_in(run, summary)
    medians = {f"{v:g}": round(float(m), 4) for v, m in zip(summary["value"], summary["median_ms"], strict=True)}
    return {"kernel": "synthetic, 2 threads, 1 MiB x 64 columns", "medians_ms": medians,
            "monotone": not found, "falls": [f.sentence() for f in found],
            "run_dir": str(out) if out is not None else None}  # fmt: skip
