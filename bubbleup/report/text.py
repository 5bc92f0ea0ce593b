"""A run's verdicts for the terminal: one table row per setting, then only what needs words.

Twelve settings as sentences made 24 near-identical lines; a table shows the cliffs side by side, the way a
reader compares them. Below it: the CPU-demand arithmetic (once when every setting shares it), the
resamples' whole distribution for each verdict they do not back or back in under 90% (``SURE_SHARE``),
each fall of the curve (a non-monotone dial), and why each setting that stopped working did. The report's HTML keeps
every sentence (:func:`bubbleup.analysis.cliff.Cliff.sentence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bubbleup.analysis.cliff import NON_FUNCTIONAL

HEADER = ("setting", "verdict", "rise at the cliff [95% CI]", "resamples", "CPU demand predicts")


def table(cells: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, trailing blanks trimmed."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def verdict_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The summary's cliff rows (:func:`bubbleup.report.html.cliff_rows`) as text: what ``run`` and ``report``
    print, so the verdicts, how sure they are and any sawtooth are seen without opening the HTML."""
    if not rows:
        return []
    body = [(r["setting"], r["short"], r["jump"] or "-", r["resamples"], r["predicted_short"] or "-") for r in rows]
    keep = [i for i in range(len(HEADER)) if i < 2 or any(row[i] != "-" for row in body)]
    lines = table([[row[i] for i in keep] for row in [HEADER, *body]])
    whys = list(dict.fromkeys(r["demand_why"] for r in rows if r["demand_why"]))
    if len(whys) == 1:
        lines.append(f"CPU demand: {whys[0]}.")
    else:
        lines += [f"CPU demand, {r['setting']}: {r['demand_why']}." for r in rows if r["demand_why"]]
    lines += [f"{r['setting']}: {r['confidence']}" for r in rows
              if not (r["agrees"] and r["sure"]) and r["confidence"]]  # fmt: skip
    lines += [f"  {r['fall']}" for r in rows if r["fall"]]
    lines += [r["sentence"] for r in rows if r["kind"] == NON_FUNCTIONAL]  # why it stopped: the status and error
    return lines


def headline(rows: Sequence[dict[str, Any]]) -> str:
    """The verdicts grouped, for the report's first line: ``cliff at 4 bubbles: all 12 settings; CPU demand
    predicts at 4 (within one step) for all 12.`` Settings that share a verdict are named together."""
    if not rows:
        return ""
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["short"], []).append(r["setting"])
    n = len(rows)
    every = "the only setting" if n == 1 else f"all {n} settings"
    parts = [f"{short}: {every if len(names) == n else ', '.join(names)}" for short, names in groups.items()]
    predicted = {r["predicted_short"] for r in rows}
    if len(predicted) == 1 and "" not in predicted:
        parts.append(f"CPU demand predicts {predicted.pop()} for {'it' if n == 1 else f'all {n}'}")
    return "; ".join(parts) + "."
