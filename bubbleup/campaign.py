"""Campaigns: several scenarios (and repeats of them) run one after another, each into its own run directory
under one campaign directory, with one page that links every report and tabulates cliffs and validity.

A campaign file::

    name: nightly
    runs:
      - scenario: smoke.yaml              # relative to the campaign file
      - scenario: synthetic-count.yaml
        repeats: 2                        # two run directories of it
        requires: {cpus: 4, memory_gb: 8} # a host that has less does not run it (recorded as skipped)

The campaign directory holds ``campaign.json`` (the plan and what became of each run), one run directory per
planned run (``01-smoke``, ``02-synthetic-count-1``, ...) and ``index.html``. A run's own ``manifest.json``
is the truth about it; ``campaign.json`` adds only what the run cannot say (skipped, the host it ran on, a
host that died). ``--resume`` runs what is missing and resumes what was interrupted, wherever it stopped.
Every run is an ordinary run: here in this process (:func:`run_local`), or on Ray hosts
(:mod:`bubbleup.campaign_ray`, imported only with ``--ray``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from pydantic import Field, StrictStr, ValidationError

from bubbleup.errors import UserError
from bubbleup.inputs import read_yaml, validation_line
from bubbleup.specs import Float, Int, _Strict
from bubbleup.store.layout import MANIFEST, is_run_dir, now_iso

CAMPAIGN_FILE = "campaign.json"
#: Run statuses that are final: the run is not run again on --resume (a failure is a result).
FINAL = ("complete", "failed")


class Requires(_Strict):
    """What a host must have to run an entry; a host with less skips it (recorded)."""

    cpus: Int | None = Field(default=None, ge=1, le=4096)
    memory_gb: Float | None = Field(default=None, gt=0.0, le=65536.0)


class Entry(_Strict):
    scenario: StrictStr = Field(min_length=1)
    repeats: Int = Field(default=1, ge=1, le=100)
    requires: Requires = Field(default_factory=Requires)


class CampaignSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: StrictStr = ""
    runs: list[Entry] = Field(min_length=1, max_length=1000)


@dataclass
class PlannedRun:
    """One run directory the campaign will hold, and what became of it beyond its own manifest."""

    id: str  # the run directory's name under the campaign directory
    scenario: str  # the scenario file, as resolved when the campaign was planned
    given: dict[str, Any]  # the scenario as given (what the run records and resumes from)
    requires: dict[str, Any]
    note: str = ""  # skipped / host died / failed to start, in words
    host: str = ""  # where it ran (a Ray node), empty for this machine


@dataclass
class Campaign:
    root: Path
    name: str
    source: str
    runs: list[PlannedRun]
    started_at: str = field(default_factory=now_iso)
    status: str = "running"
    engine: str = "local"

    def run_dir(self, run: PlannedRun) -> Path:
        return self.root / run.id

    @property
    def planned(self) -> list[PlannedRun]:
        return self.runs

    def save(self) -> None:
        data = {"name": self.name, "source": self.source, "started_at": self.started_at, "status": self.status,
                "engine": self.engine, "runs": [asdict(r) for r in self.runs]}  # fmt: skip
        tmp = self.root / f"{CAMPAIGN_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.root / CAMPAIGN_FILE)

    @classmethod
    def open(cls, root: Path) -> Campaign:
        try:
            data = json.loads((root / CAMPAIGN_FILE).read_text())
        except FileNotFoundError:
            raise UserError(f"{root}: not a campaign directory (no {CAMPAIGN_FILE})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{root / CAMPAIGN_FILE}: unreadable: {exc}") from None
        try:
            runs = [PlannedRun(**r) for r in data["runs"]]
            for r in runs:  # an id names a directory under the campaign's: never a path out of it
                if not isinstance(r.id, str) or not r.id or r.id in (".", "..") or "/" in r.id or "\0" in r.id:
                    raise TypeError(f"run id {r.id!r} is not a plain name")
            return cls(root, data["name"], data["source"], runs, data["started_at"], data["status"],
                       data.get("engine", "local"))  # fmt: skip
        except (KeyError, TypeError) as exc:  # valid JSON, not what a campaign writes
            raise UserError(f"{root / CAMPAIGN_FILE}: not a campaign's record ({type(exc).__name__}: {exc})") from None

    def status_of(self, run: PlannedRun) -> str:
        """complete / failed / interrupted / running (a run whose host stopped answering) / skipped / not run."""
        path = self.run_dir(run) / MANIFEST
        if not path.is_file():
            return "skipped" if run.note.startswith("skipped") else "not run"
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return "unknown"
        return str(data.get("status") or "unknown") if isinstance(data, dict) else "unknown"

    def ended(self) -> str:
        """The campaign's status once its loop is done: complete, or incomplete while a run still is not."""
        return "incomplete" if self.todo() else "complete"

    def todo(self) -> list[PlannedRun]:
        """What --resume (or a first start) still has to do: every run not complete, failed or skipped."""
        return [r for r in self.runs if self.status_of(r) not in (*FINAL, "skipped")]


def load_campaign(path: str | Path) -> tuple[CampaignSpec, list[PlannedRun]]:
    """Read a campaign file and every scenario it names (each validated now, so bad input stops the campaign
    before anything runs, in one line naming the file and field)."""
    from bubbleup.scenario import load_scenario

    path = Path(path)
    data = read_yaml(path, "campaign")
    if not isinstance(data, dict):
        raise UserError(f"{path}: (top level): expected a mapping with name and runs")
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        where, msg = validation_line(exc, "campaign")
        raise UserError(f"{path}: {where}: {msg}") from None
    planned: list[PlannedRun] = []
    for i, entry in enumerate(spec.runs):
        try:
            file = (path.parent / entry.scenario).resolve()
            found = file.is_file()
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
            raise UserError(f"{path}: runs.{i}.scenario: not a usable path: {exc}") from None
        if not found:
            raise UserError(f"{path}: runs.{i}.scenario: {entry.scenario}: no such file (relative to the campaign)")
        scenario, given = load_scenario(file)
        for k in range(entry.repeats):
            suffix = f"-{k + 1}" if entry.repeats > 1 else ""
            planned.append(PlannedRun(f"{len(planned) + 1:02d}-{scenario.name}{suffix}", str(file), given,
                                      entry.requires.model_dump(exclude_none=True)))  # fmt: skip
    return spec, planned


def unmet(requires: dict[str, Any], cpus: int, memory_gb: float) -> str:
    """Why a host with ``cpus`` and ``memory_gb`` cannot run an entry, or "" when it can."""
    out = []
    if requires.get("cpus") and cpus < requires["cpus"]:
        out.append(f"needs {requires['cpus']} CPUs, the host has {cpus}")
    if requires.get("memory_gb") and memory_gb < requires["memory_gb"]:
        out.append(f"needs {requires['memory_gb']:g} GB of memory, the host has {memory_gb:.1f}")
    return "; ".join(out)


def here() -> tuple[int, float]:
    """This host's CPUs (the ones this process may use) and memory (GB)."""
    return len(os.sched_getaffinity(0)), psutil.virtual_memory().total / 1e9


def start(path: Path, out: Path) -> Campaign:
    """Plan a campaign from its file into a new campaign directory ``out``."""
    spec, planned = load_campaign(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory; --out names the campaign directory to create")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: exists and is not empty; a campaign starts in a new directory (or use --resume)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the campaign directory: {exc.strerror or exc}") from None
    campaign = Campaign(out, spec.name, str(path.resolve()), planned)
    campaign.save()
    return campaign


def run_local(campaign: Campaign, reports_root: Path, progress: bool = True, allow_concurrent: bool = False) -> None:
    """Run what is left of ``campaign`` here, one run after another; an interrupt stops the campaign (the run
    it cut short is interrupted, as a run is) and the page says so."""
    from bubbleup.errors import RunFailed
    from bubbleup.scenario import scenario_from_dict
    from bubbleup.sweep import lifecycle

    cpus, memory = here()
    campaign.status = "running"
    campaign.save()
    try:
        for run in campaign.todo():
            why = unmet(run.requires, cpus, memory)
            if why:
                run.note = f"skipped: {why}"
                campaign.save()
                continue
            target = campaign.run_dir(run)
            print(f"campaign {campaign.name}: {run.id}", file=sys.stderr, flush=True)
            try:
                if is_run_dir(target):
                    lifecycle.resume(target, progress=progress, allow_concurrent=allow_concurrent)
                else:
                    scenario = scenario_from_dict(run.given, run.scenario)
                    lifecycle.run(scenario, run.given, target, reports_root, progress=progress, source=run.scenario,
                                     allow_concurrent=allow_concurrent)  # fmt: skip
            except RunFailed as exc:
                run.note = f"failed: {exc}"
            finish_run(campaign, run)
        campaign.status = campaign.ended()
    except BaseException:
        campaign.status = "interrupted"
        raise
    finally:
        campaign.save()
        write_index(campaign)


def finish_run(campaign: Campaign, run: PlannedRun, report: bool = True) -> None:
    """After a run ends however it ended: its report (unless ``report`` is False: a Ray driver on a host that
    runs the next run meanwhile draws them all at the end; drawing one beside it made that run INVALID), and
    the campaign's page, brought up to date."""
    target = campaign.run_dir(run)
    if report and is_run_dir(target):
        try:
            from bubbleup.report.html import write_report

            write_report(target)
        except Exception as exc:  # a report that cannot be drawn must not stop the campaign
            print(f"warning: {target}: report not written: {type(exc).__name__}: {exc}", file=sys.stderr)
    campaign.save()
    write_index(campaign)


def write_index(campaign: Campaign) -> Path:
    from bubbleup.report.campaign import write

    return write(campaign)


def open_or_start(file: str | None, resume: str | None, out: str | None, reports_root: Path) -> Campaign:
    """``bubbleup campaign``'s campaign: started from ``file``, or ``--resume``'d from its directory."""
    from bubbleup.store.layout import default_run_dir

    if (file is None) == (resume is None):
        raise UserError("campaign: give a campaign file, or --resume CAMPAIGN_DIR (not both)")
    if resume is not None:
        return Campaign.open(Path(resume))
    assert file is not None
    spec, _ = load_campaign(file)
    return start(Path(file), Path(out) if out else default_run_dir(reports_root, spec.name))
