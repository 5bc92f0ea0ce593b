"""A run's life around its sweep: take the machine lock, create (or reopen) the run directory, sweep
(:class:`bubbleup.sweep.orchestrator.Orchestrator`), then record how it ended, the runs it overlapped, its
VALID / INVALID verdict and, for a size sweep, its sensitivity curves, however it ended.

The verdict is judged from the run's files (:mod:`bubbleup.analysis.validity`) and written into the manifest
here, at the end of the run, so that every way of running (the CLI, the API, a campaign, a Ray host, the
pytest plugin) leaves a run directory that says whether it is valid; ``bubbleup report`` judges it again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bubbleup.errors import UserError
from bubbleup.machine import lock as machine_lock
from bubbleup.scenario import Scenario, scenario_from_dict
from bubbleup.store.layout import MANIFEST, default_run_dir, now_iso
from bubbleup.store.manifest import read as read_manifest
from bubbleup.store.writer import RunWriter, StoreWriteError
from bubbleup.sweep import signals
from bubbleup.sweep.facts import calibration_facts, new_manifest, resume_differences
from bubbleup.sweep.orchestrator import Orchestrator
from bubbleup.sweep.plan import adapt_profiles, check_memory_safety
from bubbleup.sweep.signals import Interrupted, signals_raise


def run(scenario: Scenario, given: dict[str, Any], out: Path | None, reports_root: Path,
        progress: bool = True, calibration: Path | None = None, source: str = "scenario",
        allow_concurrent: bool = False) -> RunWriter:  # fmt: skip
    """Start a new run of ``scenario`` (read from ``source``); returns its store when the sweep has finished.
    ``calibration`` defaults to ``reports_root/calibration.json`` where that exists (for the CLI and the API alike).

    Refused (:class:`bubbleup.machine.lock.MachineBusy`, before the run directory exists) while another
    bubbleup run holds the machine, unless ``allow_concurrent`` (the run is then INVALID)."""
    safety = check_memory_safety(scenario, source=source)
    profiles = adapt_profiles(scenario, source=source)
    root = out if out is not None else default_run_dir(reports_root, scenario.name)
    manifest = new_manifest(scenario, given)
    if calibration is None and (reports_root / "calibration.json").is_file():
        calibration = reports_root / "calibration.json"
    cal = calibration_facts(scenario, calibration)
    differ = [f"{label} adapts on a profile measured with other workload options ({', '.join(p['options_differ'])})"
              for label, p in profiles.items() if p["options_differ"]]  # fmt: skip
    manifest = manifest.model_copy(update={"calibration": cal, "memory_safety": safety, "adapt_profiles": profiles,
                                           "environment_warnings": [*manifest.environment_warnings,
                                                                    *cal["warnings"], *differ]})  # fmt: skip
    with machine_lock.acquire(root, allow_concurrent) as held:
        store = RunWriter.create(root, manifest)
        _execute(scenario, store, progress, held)
    return store


def resume(run_dir: Path, progress: bool = True, allow_concurrent: bool = False) -> RunWriter:
    """Continue an interrupted run in place: completed points are kept, the rest are run (the machine lock
    as for :func:`run`). A complete run is left exactly as it is: no new start check to judge it by."""
    if (recorded := read_manifest(run_dir / MANIFEST)).status == "complete":
        print(f"{run_dir}: the run is complete; nothing to resume", file=sys.stderr)
        return RunWriter(run_dir, recorded)
    with machine_lock.acquire(run_dir, allow_concurrent) as held:
        store = RunWriter.open_for_resume(run_dir)
        source = str(run_dir / MANIFEST)
        scenario = scenario_from_dict(store.manifest.scenario_given, source)
        if differ := resume_differences(store.manifest, scenario):
            more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
            raise UserError(f"{run_dir}: cannot resume on this machine: {differ[0]}{more}; its points would not be "
                            "measured under the same conditions as the rest (resume it where it began, or start a "
                            "new run)")  # fmt: skip
        check_memory_safety(scenario, source=source)
        # validity=None: the old verdict judged fewer points; until this session ends and judges again there is none
        store.update_manifest(status="running", stop_reason=None, validity=None,
                              resumed_at=[*store.manifest.resumed_at, now_iso()])
        _execute(scenario, store, progress, held)
    return store


def _execute(scenario: Scenario, store: RunWriter, progress: bool, held: machine_lock.MachineLock) -> None:
    for w in store.manifest.environment_warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"run directory: {store.root}", file=sys.stderr, flush=True)
    earlier = list(store.manifest.concurrent_runs)  # a resumed run keeps what its earlier sessions met
    if held.found_at_start:
        print(f"warning: sharing the machine with {len(held.found_at_start)} other bubbleup run(s) "
              "(--allow-concurrent): this run will be INVALID", file=sys.stderr)  # fmt: skip
        store.update_manifest(concurrent_runs=[*earlier, *held.concurrent()])
    # The run's end is recorded with the stop signals still caught, and a signal arriving meanwhile waits for
    # the record (signals.held; raised after it only when the run itself ended well): a second Ctrl-C would
    # otherwise cut the verdict short.
    ending: tuple[str, str | None] = ("complete", None)
    with signals_raise():
        try:
            Orchestrator(scenario, store, progress).run()
        except Interrupted as exc:
            ending = ("interrupted", f"signal {exc}")
            raise
        except StoreWriteError as exc:
            ending = ("interrupted", str(exc))
            raise
        except BaseException as exc:
            ending = ("failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            with signals.held(then_raise=ending[0] == "complete"):
                _finish(store, *ending, earlier, held)


def _finish(store: RunWriter, status: str, reason: str | None, earlier: list[dict[str, Any]],
            held: machine_lock.MachineLock) -> None:  # fmt: skip
    """Record how the run ended, the runs it overlapped and its verdict; if even that cannot be written,
    say so and let the first error stand."""
    try:
        store.update_manifest(concurrent_runs=[*earlier, *held.concurrent()])
        store.finish(status, reason)
    except StoreWriteError as exc:
        print(f"warning: the manifest could not record that the run was {status}: {exc}", file=sys.stderr)
        return
    _record_validity(store)
    _record_sensitivity(store)


def _record_validity(store: RunWriter) -> None:
    """Judge the run from its files as they now stand (analysis.validity) and record the verdict in the manifest.

    Never raises: a run that ended (however it ended) keeps its data and its first error; a verdict
    that could not be reached is a warning, and ``bubbleup report`` computes it again."""
    from bubbleup.analysis import validity
    from bubbleup.store.reader import load_run

    try:
        store.update_manifest(validity=validity.check(load_run(store.root)).to_dict())
    except Exception as exc:
        print(f"warning: the run's validity could not be recorded: {type(exc).__name__}: {exc}", file=sys.stderr)


def _record_sensitivity(store: RunWriter) -> None:
    """Write the run's sensitivity curves (``sensitivity.csv``) when it swept bubble size; never raises."""
    from bubbleup.analysis import sensitivity
    from bubbleup.store.reader import load_run

    try:
        sensitivity.write(load_run(store.root))
    except Exception as exc:
        print(f"warning: the run's sensitivity curves could not be written: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
