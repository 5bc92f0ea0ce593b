"""bubbleup: Bubble-Up style contention testing harness.

The public API, for notebooks and other tools (pyperf-style)::

    import bubbleup
    scenario = bubbleup.Scenario.from_yaml("scenarios/smoke.yaml")
    run = bubbleup.run(scenario, out="reports/smoke/try1")      # sweeps, writes the run directory
    run = bubbleup.load_run("reports/smoke/try1")               # or load any saved run
    run.samples, run.points, run.telemetry, run.manifest        # DataFrames and the manifest model
    for cliff in bubbleup.find_cliffs(run): print(cliff.sentence())

This package must stay import-light: bubble processes import it, and every megabyte imported here
would be carried by every bubble. The names above load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
SCHEMA_VERSION = 1  # the run-directory schema (bubbleup.store.layout says what it promises)

if TYPE_CHECKING:
    from bubbleup.api import find_cliffs, load_run, run, summarise
    from bubbleup.scenario import Scenario
    from bubbleup.store.reader import Run

_EXPORTS = {
    "Scenario": "bubbleup.scenario",
    "Run": "bubbleup.store.reader",
    "load_run": "bubbleup.api",
    "run": "bubbleup.api",
    "find_cliffs": "bubbleup.api",
    "summarise": "bubbleup.api",
}

__all__ = ["SCHEMA_VERSION", "Run", "Scenario", "__version__", "find_cliffs", "load_run", "run", "summarise"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bubbleup' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
