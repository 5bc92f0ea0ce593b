"""The report's accuracy section: each setting's top-1, the accuracy-latency levels and the recommendation
(:mod:`bubbleup.analysis.tradeoff`), shaped for the template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bubbleup.analysis import tradeoff
from bubbleup.formatting import fmt_ms, format_value
from bubbleup.store.reader import Run


@dataclass(frozen=True)
class AccuracyView:
    """What the report shows of accuracy: each setting's top-1, the figure's levels and the recommendation."""

    per_setting: dict[str, tradeoff.Accuracy]
    levels: list[tradeoff.Level]
    percentile: float
    recommendation: tradeoff.Recommendation | None
    problem: str  # why an SLO the scenario states could not be answered, else ""


def accuracy_view(run: Run, summary: pd.DataFrame) -> AccuracyView | None:
    """None for a run whose workload does not say what is right."""
    per = tradeoff.setting_accuracy(run)
    if not per:
        return None
    slo = (run.effective.get("slo") or None) if run.axis != "schedule" else None  # a schedule has no levels
    percentile = float(slo["percentile"]) if slo else 50.0
    rec, problem = None, ""
    if slo:
        try:
            rec = tradeoff.recommend(run, summary, float(slo["ms"]), percentile, float(slo["margin"]), per)
        except tradeoff.TradeoffError as exc:
            problem, percentile = str(exc), 50.0
    levels = list(rec.levels) if rec is not None else tradeoff.levels(summary, per, percentile)
    return AccuracyView(per, levels, percentile, rec, problem)


def accuracy_context(view: AccuracyView | None, axis: str) -> dict[str, Any] | None:
    """The template's accuracy section: per-setting top-1, and the recommendation table when there is one."""
    if view is None:
        return None
    rec = view.recommendation
    settings = [{"setting": s, "top1": f"{a.top1:.1%}", "ci": f"{a.low:.1%}-{a.high:.1%}", "n": a.n}
                for s, a in view.per_setting.items()]  # fmt: skip
    out: dict[str, Any] = {
        "settings": settings,
        "problem": view.problem,
        "recommendation": None,
        "levels": axis != "schedule",  # a schedule has no pressure levels to recommend a setting for
    }
    if rec is not None:
        lines = rec.lines()
        rows = []
        for level in rec.levels:
            c, f = level.chosen, level.fallback
            rows.append({"value": format_value(level.value, axis), "fits": c is not None,
                         "setting": c.setting if c else "none fits",
                         "latency": fmt_ms(c.latency_ms) if c else "-",
                         "top1": c.accuracy.text() if c else "",
                         "fallback": f"fastest: {f.setting}, {fmt_ms(f.latency_ms)} ms" if (c is None and f) else ""})
        out["recommendation"] = {"head": lines[0], "rows": rows, "end": lines[-1]}
    return out
