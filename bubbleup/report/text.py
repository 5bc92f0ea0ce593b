"""A run's verdicts for the terminal: one table row per setting, then only what needs words.

Twelve settings as sentences made 24 near-identical lines; a table shows the cliffs side by side, the way a
reader compares them. Below it: the CPU-demand arithmetic (once when every setting shares it), the
resamples' whole distribution for each verdict they do not back or back in under 90% (``SURE_SHARE``),
and each fall of the curve (a non-monotone dial). The report's HTML keeps
every sentence (:func:`bubbleup.analysis.cliff.Cliff.sentence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    return lines
