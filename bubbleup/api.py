"""The public API behind ``bubbleup.run``, ``bubbleup.load_run``, ``bubbleup.find_cliffs`` and ``bubbleup.summarise``.

Thin on purpose: the CLI and these functions call the same orchestrator, store and analysis, so a
notebook gets exactly what ``python -m bubbleup run`` writes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bubbleup.analysis.cliff import Cliff
from bubbleup.scenario import Scenario
from bubbleup.store.reader import Run, load_run

__all__ = ["find_cliffs", "load_run", "run", "summarise"]


def run(scenario: Scenario | str | Path, out: str | Path | None = None, *, reports_root: str | Path = "reports",
        progress: bool = False, report: bool = True, allow_concurrent: bool = False) -> Run:  # fmt: skip
    """Run a scenario (a :class:`Scenario` or a YAML path) into a new run directory and load the result.

    ``out`` defaults to ``reports_root/<name>/<timestamp>``; ``report`` also writes ``report.html``.
    While another bubbleup run holds the machine this refuses (``MachineBusy``, a ``UserError``) unless
    ``allow_concurrent``; the verdict is ``run.manifest.validity`` (see :mod:`bubbleup.analysis.validity`).
    Bad input raises :class:`bubbleup.errors.UserError`; a run that cannot go on, :class:`bubbleup.errors.RunFailed`.
    """
    from bubbleup.scenario import scenario_from_dict
    from bubbleup.sweep import lifecycle

    if not isinstance(scenario, Scenario):
        source = str(scenario)
        scenario = Scenario.from_yaml(scenario)
    else:  # built or changed in code: resolved as a file is (settings "all" named, kinds' defaults filled in)
        source = "scenario"
        scenario = scenario_from_dict(scenario.given, source)
    store = lifecycle.run(scenario, scenario.given, Path(out) if out is not None else None, Path(reports_root),
                             progress=progress, source=source, allow_concurrent=allow_concurrent)  # fmt: skip
    if report:
        from bubbleup.report.html import write_report

        write_report(store.root)
    return load_run(store.root)


def summarise(run: Run) -> pd.DataFrame:
    """Per (sweep value, setting) statistics: n, median and its CI, tail percentiles, slowdown, status."""
    from bubbleup.analysis.summary import summarise as _summarise

    return _summarise(run)


def find_cliffs(run: Run) -> list[Cliff]:
    """Each setting's contention cliff (see :mod:`bubbleup.analysis.cliff` for the definition)."""
    from bubbleup.analysis.summary import find_cliffs as _find_cliffs

    return _find_cliffs(run)
