"""The campaign's page: every run's report linked, with its status, its validity and each setting's cliff."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import bubbleup
from bubbleup.report.html import environment
from bubbleup.store.layout import CAMPAIGN_INDEX, REPORT, is_run_dir


class PlannedRun(Protocol):
    """What the page needs of one planned run (bubbleup.campaign.PlannedRun)."""

    id: str
    scenario: str
    host: str
    note: str


class Campaign(Protocol):
    """What the page needs of a campaign (bubbleup.campaign.Campaign): the report knows nothing of running one."""

    root: Path
    name: str
    source: str
    started_at: str
    status: str
    engine: str

    @property
    def planned(self) -> Sequence[PlannedRun]: ...

    def run_dir(self, run: Any) -> Path: ...

    def status_of(self, run: Any) -> str: ...


def _row(campaign: Campaign, run: PlannedRun) -> dict[str, Any]:
    from bubbleup.analysis.summary import find_cliffs
    from bubbleup.analysis.validity import of_run
    from bubbleup.store.reader import load_run

    target = campaign.run_dir(run)
    row: dict[str, Any] = {"id": run.id, "scenario": Path(run.scenario).name, "status": campaign.status_of(run),
                           "valid": None, "reasons": "", "host": run.host or "this machine", "cliffs": [],
                           "note": run.note, "report": ""}  # fmt: skip
    if not is_run_dir(target):
        return row
    if (target / REPORT).is_file():
        row["report"] = f"{run.id}/{REPORT}"
    try:
        loaded = load_run(target)
        verdict, _ = of_run(loaded)
        row["valid"], row["reasons"] = verdict.valid, "; ".join(r.message for r in verdict.reasons)
        if len(loaded.values) > 1:
            row["cliffs"] = [c.sentence() for c in find_cliffs(loaded)]
    except Exception as exc:  # one unreadable run must not cost the page
        row["note"] = f"{run.note}; cannot read: {type(exc).__name__}: {exc}".strip("; ")
    return row


def render(campaign: Campaign) -> str:
    rows = [_row(campaign, r) for r in campaign.planned]
    counts = Counter(r["status"] for r in rows)
    return environment().get_template("campaign.html.j2").render(
        title=f"bubbleup campaign: {campaign.name}", root=str(campaign.root), status=campaign.status,
        engine=campaign.engine, started_at=campaign.started_at, source=campaign.source, rows=rows,
        counts=", ".join(f"{n} {s}" for s, n in counts.items()),
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), version=bubbleup.__version__,
    )  # fmt: skip


def write(campaign: Campaign) -> Path:
    out = campaign.root / CAMPAIGN_INDEX
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(render(campaign), encoding="utf-8")
    tmp.replace(out)
    return out
