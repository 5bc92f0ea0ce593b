"""Analysis of saved runs only (never processes, never TensorFlow): statistics, per-point summaries,
the cliff and its confidence, comparisons.

The names below are the analysis API for notebooks and other tools; they load on first use so
that importing one submodule (the orchestrator's ``analysis.stats``) does not pull in pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_run": "bubbleup.store.reader",
    "Run": "bubbleup.store.reader",
    "describe": "bubbleup.analysis.stats",
    "median_ci": "bubbleup.analysis.stats",
    "nearest_rank": "bubbleup.analysis.stats",
    "MIN_TAIL_SAMPLES": "bubbleup.analysis.stats",
    "summarise": "bubbleup.analysis.summary",
    "timed_samples": "bubbleup.analysis.summary",
    "missing_points": "bubbleup.analysis.summary",
    "is_partial": "bubbleup.analysis.summary",
    "find_cliffs": "bubbleup.analysis.summary",
    "cliffs_frame": "bubbleup.analysis.summary",
    "MissingPoint": "bubbleup.analysis.summary",
    "SUMMARY_COLUMNS": "bubbleup.analysis.summary",
    "by_point": "bubbleup.analysis.summary",
    "tail_support": "bubbleup.analysis.stats",
    "compare_runs": "bubbleup.analysis.compare",
    "verdicts": "bubbleup.analysis.confidence",
    "Verdicts": "bubbleup.analysis.confidence",
    "setting_curves": "bubbleup.analysis.summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
