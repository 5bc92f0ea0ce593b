"""manifest.json as a typed model: what the run was asked to do, what it did, and on what machine.

Every field has a default, so a reader can still describe a run whose manifest is partial; keys
this version does not know are kept (``extra="allow"``) so a tool can add facts without a schema
change. ``schema_version`` is checked on every read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bubbleup import __version__
from bubbleup.errors import UserError
from bubbleup.store.layout import SCHEMA_VERSION

RunStatus = Literal["running", "complete", "interrupted", "failed", "unknown"]

#: Keys (any part of a dotted key) of ``environment`` and ``workload_metadata`` that are readings of the moment,
#: not the set-up: they differ between any two runs, so ``compare`` lists them apart from set-up changes.
READINGS = frozenset(
    {"mem_available_mb", "loadavg_1m", "load_s", "rss_after_load_mb", "framework_rss_mb", "load_phases_s"}
)


def is_reading(key: str) -> bool:
    """Whether a flattened key (``workload.approxnet.load_phases_s.import_tf``) is a reading, not the set-up."""
    return not READINGS.isdisjoint(key.split("."))


class StepEntry(BaseModel):
    """One setting step every point runs, in order."""

    model_config = ConfigDict(frozen=True)

    workload: str
    setting: str
    warmup: int
    inferences: int


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    schema_version: int = SCHEMA_VERSION
    bubbleup_version: str = __version__
    status: RunStatus = "unknown"
    started_at: str | None = None
    finished_at: str | None = None
    #: Why a run stopped early: the signal, or the write that failed.
    stop_reason: str | None = None
    resumed_at: list[str] = Field(default_factory=list)
    name: str = ""
    started_epoch: float = 0.0
    scenario_given: dict[str, Any] = Field(default_factory=dict)
    scenario_effective: dict[str, Any] = Field(default_factory=dict)
    #: (repeat, sweep value) in execution order.
    plan: list[tuple[int, int]] = Field(default_factory=list)
    #: sweep.replication's rounds: per extra repeat, the steps that asked for it and their spread
    #: (sweep.replication.StepSpread), which are all it measured when it has ``LISTED_ONLY`` (an earlier
    #: version listed each point's worst step and measured every step of the point); the last entry, with
    #: ``"repeat": None``, the steps still above the target when the rounds ended (at max_repeats).
    replication: list[dict[str, Any]] = Field(default_factory=list)
    steps: list[StepEntry] = Field(default_factory=list)
    workloads: list[str] = Field(default_factory=list)
    settings: list[str] = Field(default_factory=list)
    #: Scheduling placement of bubbles and worker (own-session / shared-session).
    placement: str | None = None
    #: Which CPUs the worker and the bubbles were pinned to (pressure.placement.CpuAssignment).
    cpu_placement: dict[str, Any] | None = None
    #: Cores the run may use and the cores one unit of pressure asks for (sweep.facts.cpu_demand).
    cpu_demand: dict[str, Any] | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    environment_warnings: list[str] = Field(default_factory=list)
    telemetry_columns: list[str] = Field(default_factory=list)
    #: Per workload label: what it reported at load (threads, model sizes, ...), load time, RSS.
    workload_metadata: dict[str, dict[str, Any]] | None = None
    calibration: dict[str, Any] | None = None
    memory_safety: dict[str, float] | None = None
    budget: dict[str, Any] | None = None
    budget_final_stats: dict[str, Any] | None = None
    #: How points.csv and the report compute their statistics (analysis.stats.METHOD).
    statistics: dict[str, Any] | None = None
    #: The machine before measuring, one entry per start and resume: cores the run's processes and everybody
    #: else's used over a short window (machine.telemetry.outside_cpu).
    machine_checks: list[dict[str, Any]] = Field(default_factory=list)
    #: Who outside the run used the CPU during a point (0.05 cores or more; machine.telemetry.Sampler.busiest):
    #: {repeat, value, busiest}, so that validity's ``machine_busy`` names them. Points nobody else used are
    #: not listed.
    busy_points: list[dict[str, Any]] = Field(default_factory=list)
    #: Other bubbleup runs this run overlapped on this machine (machine.lock; only with --allow-concurrent).
    concurrent_runs: list[dict[str, Any]] = Field(default_factory=list)
    #: The run's verdict, computed from its files as it ended (analysis.validity.Validity.to_dict()):
    #: ``valid``, ``reasons`` [{code, message}], ``unchecked``. None for runs older than the verdict.
    validity: dict[str, Any] | None = None
    #: Per adaptive workload (label): the profile table its policy ran on (analysis.tradeoff.profile_table),
    #: read from the profile run as this run started, so the run says what it adapted to.
    adapt_profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("validity")
    @classmethod
    def _verdict_shape(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        """What readers of the verdict rely on: ``valid`` a bool, ``reasons`` a list of {code, message}."""
        if v is None:
            return v
        if not isinstance(v.get("valid"), bool):
            raise ValueError("'valid' must be true or false")
        reasons = v.get("reasons", [])
        if not isinstance(reasons, list) or not all(
            isinstance(r, dict) and isinstance(r.get("code"), str) and isinstance(r.get("message"), str)
            for r in reasons
        ):
            raise ValueError("'reasons' must be a list of {code, message}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _first_schema1_form(cls, data: Any) -> Any:
        """The first schema-1 runs (one workload a run) wrote steps without their workload and the workload's
        metadata flat; read them as today's form, with the workload's label (or kind) filled in."""
        if not isinstance(data, dict):
            return data
        raw = data.get("scenario_effective")
        effective: dict[str, Any] = raw if isinstance(raw, dict) else {}
        raw = effective.get("workload")
        workload: dict[str, Any] = raw if isinstance(raw, dict) else {}
        label = ((data.get("workloads") or [None])[0] or workload.get("label") or workload.get("kind")
                 or "workload")  # fmt: skip
        steps = data.get("steps")
        if isinstance(steps, list) and any(isinstance(s, dict) and "workload" not in s for s in steps):
            data = {**data, "steps": [{"workload": label, **s} if isinstance(s, dict) else s for s in steps]}
        meta = data.get("workload_metadata")
        if isinstance(meta, dict) and meta and not all(isinstance(v, dict) for v in meta.values()):
            data = {**data, "workload_metadata": {str(label): meta}}
        return data

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, default=str)

    def round_steps(self, repeat: int) -> set[StepId] | None:
        """The steps an extra repeat measured, when its replication round measured only those it lists; None for
        a repeat that measured every step of its points (a planned repeat, or an earlier version's round)."""
        return round_steps(self.replication, repeat)


#: (sweep value, workload label, setting): a step of a point, as a replication round lists it.
StepId = tuple[int, str, str]
#: A replication round's key, true when the round measured only the steps it lists.
LISTED_ONLY = "listed_steps_only"


def round_steps(rounds: list[dict[str, Any]], repeat: int) -> set[StepId] | None:
    """:meth:`Manifest.round_steps` of a manifest's ``replication`` entries (a run that plans its next round
    reads them before they are in a manifest)."""
    for entry in rounds:
        if entry.get("repeat") == repeat and entry.get(LISTED_ONLY):
            return {(int(p["value"]), str(p["workload"]), str(p["setting"])) for p in entry.get("points") or []}
    return None


def check_schema(version: Any, source: Path | str) -> None:
    """Refuse, in one line, a run directory written to a schema this bubbleup does not know."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{source}: schema_version: {version!r} is not a run-directory schema version")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{source}: schema_version: {version} is newer than this bubbleup {__version__} reads "
            f"(up to {SCHEMA_VERSION}); upgrade bubbleup to read this run"
        )


def parse(data: Any, source: Path | str) -> Manifest:
    """Validate manifest data: the schema first, then every field, each problem as one line."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: (top level): expected a JSON object, got {type(data).__name__}")
    check_schema(data.get("schema_version"), source)
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UserError(f"{source}: {field}: {err['msg']}") from None


def read(path: Path) -> Manifest:
    """Read and validate ``manifest.json``; a missing or unreadable file is a clear one-line error."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path.parent}: not a run directory (no {path.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable manifest: {exc}") from None
    return parse(data, path)
