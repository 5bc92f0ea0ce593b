"""Two runs side by side (e.g. before/after a change): per point, how much B differs from A and whether that is real.

For every (pressure value, setting) measured in both runs:

- ``ratio`` = median(B) / median(A), with a 95% bootstrap CI (both runs' timed samples resampled
  independently, as for the cliff's jump);
- ``p`` from a two-sided Mann-Whitney U test on the raw samples (no normality assumed: latency
  distributions are skewed), and ``p_holm``, Holm-adjusted over all compared points so that
  comparing many points does not manufacture a "significant" one;
- ``significant`` when ``p_holm < 0.05`` *and* the ratio's CI excludes 1.

The cliffs of both runs and any difference in their environment metadata (CPU, governor,
versions) are listed too: a "regression" measured on a different machine is not one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd
from scipy import stats

from bubbleup.analysis import summary as summaries
from bubbleup.analysis.cliff import Cliff, ratio_ci
from bubbleup.formatting import flatten, format_value, ms, times
from bubbleup.store.reader import Run

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    run_a: Run
    run_b: Run
    summary_a: pd.DataFrame
    summary_b: pd.DataFrame
    table: pd.DataFrame  # one row per (value, setting) present in both runs
    cliffs_a: tuple[Cliff, ...]
    cliffs_b: tuple[Cliff, ...]
    only_a: tuple[str, ...]  # points measured in A only, in words
    only_b: tuple[str, ...]
    env_diff: tuple[tuple[str, str, str], ...]  # (key, A, B) where the environments differ
    warnings: tuple[str, ...]


class ComparisonRow(Protocol):
    """One row of :attr:`Comparison.table` as ``itertuples`` gives it."""

    setting: str
    value: float
    status_a: str
    status_b: str
    n_a: int
    n_b: int
    median_a_ms: float
    median_b_ms: float
    ratio: float
    ratio_low: float
    ratio_high: float
    p: float
    p_holm: float
    significant: bool
    verdict: str


def table_rows(table: pd.DataFrame) -> Iterator[ComparisonRow]:
    """The rows of a comparison table, typed by column (the stubs type every cell as any scalar)."""
    return cast("Iterator[ComparisonRow]", table.itertuples(index=False))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.where(~np.isnan(p))[0]
    if len(idx) == 0:
        return out
    order = idx[np.argsort(p[idx])]
    m = len(order)
    adjusted = np.maximum.accumulate([(m - i) * p[j] for i, j in enumerate(order)])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def _verdict(row: dict[str, Any]) -> str:
    if row["status_a"] != "ok" or row["status_b"] != "ok":
        return f"A {row['status_a']}, B {row['status_b']}"
    if not row["significant"]:
        return "no significant change"
    return "B slower" if row["ratio"] > 1 else "B faster"


def compare_runs(run_a: Run, run_b: Run) -> Comparison:
    """Compare two loaded runs point by point (see the module docstring)."""
    sum_a, sum_b = summaries.summarise(run_a), summaries.summarise(run_b)
    timed_a, timed_b = summaries.timed_samples(run_a), summaries.timed_samples(run_b)
    warnings = []
    if run_a.axis != run_b.axis:
        warnings.append(
            f"The runs sweep different axes ({run_a.axis} vs {run_b.axis}): points are matched by value only."
        )
    kind_a = (run_a.effective.get("workload") or {}).get("kind")
    kind_b = (run_b.effective.get("workload") or {}).get("kind")
    if kind_a != kind_b:
        warnings.append(f"The runs measure different workloads ({kind_a} vs {kind_b}).")
    if run_a.bubble != run_b.bubble:
        warnings.append(f"The bubbles differ: A {run_a.bubble}, B {run_b.bubble}.")
    for run, label in ((run_a, "A"), (run_b, "B")):
        if summaries.is_partial(run):
            warnings.append(
                f"Run {label} is partial (status {run.status}, {len(summaries.missing_points(run))} missing)."
            )
    keys_a = set(zip(sum_a["value"], sum_a["setting"], strict=True))
    keys_b = set(zip(sum_b["value"], sum_b["setting"], strict=True))
    order = {s: i for i, s in enumerate(dict.fromkeys(run_a.settings + run_b.settings))}
    common = sorted(keys_a & keys_b, key=lambda k: (order.get(k[1], 0), k[0]))
    rows = []
    for value, setting in common:
        a = sum_a[(sum_a["value"] == value) & (sum_a["setting"] == setting)].iloc[0]
        b = sum_b[(sum_b["value"] == value) & (sum_b["setting"] == setting)].iloc[0]
        xa = _latencies(timed_a, value, setting)
        xb = _latencies(timed_b, value, setting)
        row: dict[str, Any] = {
            "setting": setting,
            "value": value,
            "status_a": a["status"],
            "status_b": b["status"],
            "n_a": len(xa),
            "n_b": len(xb),
            "median_a_ms": a["median_ms"],
            "median_b_ms": b["median_ms"],
            "ratio": math.nan,
            "ratio_low": math.nan,
            "ratio_high": math.nan,
            "p": math.nan,
        }
        if len(xa) >= 2 and len(xb) >= 2:
            row["ratio"] = float(np.median(xb) / np.median(xa))
            row["ratio_low"], row["ratio_high"] = ratio_ci(xa, xb)
            row["p"] = float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
        rows.append(row)
    table = pd.DataFrame(
        rows,
        columns=[
            "setting",
            "value",
            "status_a",
            "status_b",
            "n_a",
            "n_b",
            "median_a_ms",
            "median_b_ms",
            "ratio",
            "ratio_low",
            "ratio_high",
            "p",
        ],
    )
    table["p_holm"] = holm(table["p"].to_numpy()) if len(table) else []
    excludes_one = (table["ratio_low"] > 1) | (table["ratio_high"] < 1)
    table["significant"] = (table["p_holm"] < ALPHA) & excludes_one
    table["verdict"] = [_verdict(r) for r in table.to_dict("records")]
    return Comparison(
        run_a=run_a,
        run_b=run_b,
        summary_a=sum_a,
        summary_b=sum_b,
        table=table,
        cliffs_a=tuple(summaries.find_cliffs(run_a, sum_a)),
        cliffs_b=tuple(summaries.find_cliffs(run_b, sum_b)),
        only_a=tuple(f"{s} at {format_value(v, run_a.axis)}" for v, s in sorted(keys_a - keys_b, key=str)),
        only_b=tuple(f"{s} at {format_value(v, run_b.axis)}" for v, s in sorted(keys_b - keys_a, key=str)),
        env_diff=_env_diff(run_a, run_b),
        warnings=tuple(warnings),
    )


def _latencies(timed: pd.DataFrame, value: float, setting: str) -> np.ndarray:
    if timed.empty:
        return np.array([])
    return timed.loc[(timed["value"] == value) & (timed["setting"] == setting), "latency_ms"].to_numpy(float)


def _env_diff(run_a: Run, run_b: Run) -> tuple[tuple[str, str, str], ...]:
    env_a = dict(flatten(run_a.manifest.environment or {}))
    env_b = dict(flatten(run_b.manifest.environment or {}))
    env_a.update(("workload." + k, v) for k, v in flatten(run_a.manifest.workload_metadata or {}))
    env_b.update(("workload." + k, v) for k, v in flatten(run_b.manifest.workload_metadata or {}))
    keys = list(dict.fromkeys([*env_a, *env_b]))
    return tuple((k, env_a.get(k, "-"), env_b.get(k, "-")) for k in keys if env_a.get(k) != env_b.get(k))


def _cliff_short(c: Cliff | None) -> str:
    if c is None:
        return "not measured"
    if c.kind == "break":
        return f"cliff at {format_value(c.at, c.axis)} ({times(c.jump)}), tolerates {format_value(c.tolerated, c.axis)}"
    if c.kind == "non-functional":
        return f"stops working at {format_value(c.at, c.axis)}"
    if c.kind == "none":
        return f"no cliff up to {format_value(c.measured_max, c.axis)}"
    return c.kind


def cliff_pairs(cmp: Comparison) -> list[tuple[str, str, str]]:
    """(setting, A's cliff, B's cliff) in words."""
    a = {c.setting: c for c in cmp.cliffs_a}
    b = {c.setting: c for c in cmp.cliffs_b}
    names = list(dict.fromkeys([*a, *b]))
    return [(s, _cliff_short(a.get(s)), _cliff_short(b.get(s))) for s in names]


def format_text(cmp: Comparison) -> str:
    """A short terminal table: one line per point, then the cliffs."""
    t = cmp.table
    head = f"A: {cmp.run_a.name} ({cmp.run_a.path})\nB: {cmp.run_b.name} ({cmp.run_b.path})"
    lines = [head, *(f"! {w}" for w in cmp.warnings)]
    if t.empty:
        lines.append("No point was measured in both runs.")
    else:
        header = ("setting", "pressure", "A median", "B median", "B/A [95% CI]", "p (Holm)", "verdict")
        body = []
        for r in table_rows(t):
            ci = f"{times(r.ratio)} [{times(r.ratio_low)}, {times(r.ratio_high)}]" if not math.isnan(r.ratio) else "-"
            p = f"{r.p_holm:.2g}" if not math.isnan(r.p_holm) else "-"
            body.append(
                (
                    str(r.setting),
                    format_value(r.value, cmp.run_a.axis),
                    ms(r.median_a_ms),
                    ms(r.median_b_ms),
                    ci,
                    p,
                    ("* " if r.significant else "") + r.verdict,
                )
            )
        widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
        for cells in (header, *body):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        lines.append("* significant: Holm-adjusted Mann-Whitney p < 0.05 and the ratio's 95% CI excludes 1.")
    for setting, a, b in cliff_pairs(cmp):
        lines.append(f"cliff {setting}: A {a} | B {b}")
    if cmp.env_diff:
        lines.append("environment differs: " + "; ".join(f"{k}: {a} -> {b}" for k, a, b in cmp.env_diff[:6]))
    return "\n".join(lines)
