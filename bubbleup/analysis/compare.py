"""Two runs side by side (e.g. before/after a change): per point, how much B differs from A and whether that is real.

The unit of replication is the *repeat*, not the inference. Samples inside one run share that
run's worker placement, memory layout and the VM's speed state of the moment, so they are not
independent replicates of the run: a test on them (Mann-Whitney on the raw samples, which this
module used before) reads run-to-run variance as signal, and on three A/A pairs of the main job
it flagged 44, 35 and 5 of 84 points. Here, for every (pressure value, setting) measured in both:

- each run's statistic is the mean of its repeats' interquartile means (every repeat weighs the same). Not
  the median: where CPU demand just passes the cores latency has two modes, and a point's median jumps
  between them from run to run (on three runs of the main job the median's CV across runs reached 7.9%
  at such points, the IQM's 5.3%; a 1.2x slower copy was flagged at 88% of points by medians, 97% by
  IQMs, with A/A pairs at 0-3% either way; README "Benchmarks"). The table still shows the medians;
- ``ratio`` = B's statistic / A's, with a 95% CI from a *hierarchical* bootstrap: repeats resampled
  with replacement, then samples within each resampled repeat (pyperf likewise compares values
  across worker processes, not within one). With one repeat per run only the samples are
  resampled, and a warning says the CI cannot see run-to-run variance;
- ``significant`` when the CI excludes 1 *and* the ratio differs from 1 by at least ``min_effect``
  (default 5%): a smaller difference is reported as no change (``~``), as benchstat and pyperf's
  ``--min-speed`` do, because a harness on a shared VM cannot promise better.

Per setting, the two runs' cliffs *agree* when both find none, or both find one at the same
pressure or at neighbouring measured pressures (within one step); the comparison counts how many
settings agree. Differences in the environment metadata (CPU, governor, versions) are listed:
a "regression" measured on a different machine is not one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd

from bubbleup.analysis import speed, validity
from bubbleup.analysis import summary as summaries
from bubbleup.analysis.cliff import Cliff, within_one_step
from bubbleup.analysis.stats import IQM, Statistic, hierarchical_resamples, replicate_statistic
from bubbleup.formatting import flatten, format_value, ms, number, times
from bubbleup.store.manifest import is_reading
from bubbleup.store.reader import Run

CONFIDENCE = 0.95
#: Below this relative difference of the two runs' statistics a point is "no change", whatever its CI.
MIN_EFFECT = 0.05
N_RESAMPLES = 2000
SEED = 0


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
    env_diff: tuple[tuple[str, str, str], ...]  # (key, A, B) where the set-ups differ (versions, CPU, kernel...)
    warnings: tuple[str, ...]
    min_effect: float = MIN_EFFECT
    #: Whether ratios are at one CPU speed (both runs probed; analysis.speed), or raw.
    one_speed: bool = False
    #: How far both runs' latency followed the probe between repeats (analysis.speed.elasticity): each inference
    #: is scaled by its probe to this power (1: in full; 0, raw).
    beta: float = 1.0
    agreement: tuple[CliffAgreement, ...] = ()
    #: (key, A, B) where readings taken at each run's start differ (load, free memory, load times): they always do.
    env_readings: tuple[tuple[str, str, str], ...] = ()

    @property
    def power(self) -> str:
        """`` to the power 0.28`` when inferences are scaled by their probe in part (the fitted elasticity), else ""."""
        return f" to the power {self.beta:.2f}" if self.one_speed and self.beta < 1 else ""

    @property
    def agree_count(self) -> int:
        return sum(a.agree for a in self.agreement)

    @property
    def flagged(self) -> int:
        """Points whose difference is significant and at least the minimum effect."""
        return int(self.table["significant"].sum()) if len(self.table) else 0


@dataclass(frozen=True)
class CliffAgreement:
    """Whether two runs put one setting's cliff in the same place (or within one measured step)."""

    setting: str
    a: str  # A's cliff in words
    b: str
    agree: bool
    why: str  # "same", "within one step", "A none, B at 2", ...


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
    n_repeats_a: int
    n_repeats_b: int
    speed_ratio: float
    significant: bool
    verdict: str


def table_rows(table: pd.DataFrame) -> Iterator[ComparisonRow]:
    """The rows of a comparison table, typed by column (the stubs type every cell as any scalar)."""
    return cast("Iterator[ComparisonRow]", table.itertuples(index=False))


def _by_repeat(curves: Sequence[summaries.SettingCurve]) -> dict[tuple[float, str], list[np.ndarray]]:
    """Timed latencies per (value, setting), one array per repeat (in repeat order): the replicates of a point."""
    return {(p.value, c.setting): p.replicates() for c in curves for p in c.points if p.by_repeat}


def ratio_interval(a: Sequence[np.ndarray], b: Sequence[np.ndarray], q: Statistic = IQM, seed: int = SEED,
                   confidence: float = CONFIDENCE) -> tuple[float, float, float]:  # fmt: skip
    """B/A of :func:`replicate_statistic` (of the repeats' IQMs, or percentile ``q``) with its
    hierarchical-bootstrap percentile CI (95% unless ``confidence`` says otherwise)."""
    rng = np.random.default_rng(seed)
    ratios = hierarchical_resamples(b, rng, N_RESAMPLES, q) / hierarchical_resamples(a, rng, N_RESAMPLES, q)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return replicate_statistic(b, q) / replicate_statistic(a, q), float(low), float(high)


def _probes_apart(run_a: Run, run_b: Run) -> str:
    """Why the two runs' speed probes are not comparable (their loop, interpreter or CPU model differ), or ""."""
    env_a, env_b = run_a.manifest.environment or {}, run_b.manifest.environment or {}
    probe_a, probe_b = env_a.get("speed_probe") or {}, env_b.get("speed_probe") or {}
    apart = [f"{k}: {probe_a.get(k)} vs {probe_b.get(k)}" for k in sorted(set(probe_a) | set(probe_b))
             if probe_a.get(k) != probe_b.get(k)]  # fmt: skip
    if env_a.get("cpu_model") != env_b.get("cpu_model"):
        apart.append(f"CPU {env_a.get('cpu_model')} vs {env_b.get('cpu_model')}")
    return "; ".join(apart)


def _partly_tracked(run_a: Run, run_b: Run, fit: speed.Elasticity) -> str:
    """How far the two runs' latency followed the CPU speed probe (``speed.elasticity`` < 1), and how far apart
    their probes put the CPU: a whole run measured in a slower spell moves every point alike, which its repeats
    cannot see, and the probe then tells only part of it."""
    probes = speed.reference_ns(run_b) / speed.reference_ns(run_a)
    how = (f"did not follow the CPU speed probe ({fit.why_zero}): points are compared as measured"
           if fit.beta == 0 else
           f"followed the CPU speed probe only in part (fitted elasticity {fit.beta:.2f}): each inference is scaled "
           f"by its probe to that power")  # fmt: skip
    return (f"Between repeats, both runs' latency {how} (their repeats {fit.spread_raw:.1%} apart as measured, "
            f"{fit.spread_scaled:.1%} so). By its median probe, B's CPU ran {probes:.2f}x A's time per loop; a "
            f"spell of the machine that spans a whole run moves every point alike, which the runs' repeats cannot "
            f"see, so a change of a few % at every point may be the machine, not the workload.")


def _verdict(row: dict[str, Any], min_effect: float) -> str:
    if row["status_a"] != "ok" or row["status_b"] != "ok":
        return f"A {row['status_a']}, B {row['status_b']}"
    if row["significant"]:
        return "B slower" if row["ratio"] > 1 else "B faster"
    if not math.isnan(row["ratio"]) and abs(row["ratio"] - 1) < min_effect:
        return f"~ (within {min_effect:.0%})"
    return "~ (not significant)"


def compare_runs(run_a: Run, run_b: Run, min_effect: float = MIN_EFFECT) -> Comparison:
    """Compare two loaded runs point by point (see the module docstring)."""
    sum_a, sum_b = summaries.summarise(run_a), summaries.summarise(run_b)
    # One point measured twice, compared at one CPU speed (analysis.speed): both runs scaled to A's median probe,
    # when their probes count the same thing (the same loop, interpreter and CPU model).
    apart = _probes_apart(run_a, run_b)
    probed = speed.has_speed(run_a) and speed.has_speed(run_b)
    one_speed = probed and not apart
    # ... by how far both runs' latency followed the probe between repeats (speed.elasticity): in a noisy spell
    # another tenant's traffic slows the probe's loop more than the workload, and scaling in full adds noise
    fit = speed.elasticity(run_a.samples, run_b.samples) if one_speed else speed.Elasticity()
    one_speed = one_speed and fit.beta > 0
    reference = speed.reference_ns(run_a)
    speed_a, speed_b = speed.point_speed(run_a), speed.point_speed(run_b)
    # each run's cliffs as its own report judges them; the points' replicates at the common speed
    curves_a, curves_b = summaries.setting_curves(run_a, sum_a), summaries.setting_curves(run_b, sum_b)
    if one_speed:
        reps_a = _by_repeat(summaries.setting_curves(speed.adjusted(run_a, reference, fit.beta), sum_a))
        reps_b = _by_repeat(summaries.setting_curves(speed.adjusted(run_b, reference, fit.beta), sum_b))
    else:
        reps_a, reps_b = _by_repeat(curves_a), _by_repeat(curves_b)
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
        fields_a, fields_b = dict(flatten(run_a.bubble)), dict(flatten(run_b.bubble))
        differ = [f"{k} {fields_a.get(k, '-')} in A, {fields_b.get(k, '-')} in B"
                  for k in dict.fromkeys([*fields_a, *fields_b]) if fields_a.get(k) != fields_b.get(k)]  # fmt: skip
        warnings.append(f"The bubbles differ: {'; '.join(differ)}.")
    for run, label in ((run_a, "A"), (run_b, "B")):
        if summaries.is_partial(run):
            warnings.append(
                f"Run {label} is partial (status {run.status}, {len(summaries.missing_points(run))} missing)."
            )
        verdict = validity.of_run(run)[0]
        if not verdict.valid:  # its numbers may be what contaminated it, not what the code under test did
            warnings.append(f"Run {label} is {verdict.short()}: read its differences with that in mind "
                            f"('bubbleup report {run.path}' says why).")  # fmt: skip
    keys_a = set(zip(sum_a["value"], sum_a["setting"], strict=True))
    keys_b = set(zip(sum_b["value"], sum_b["setting"], strict=True))
    order = {s: i for i, s in enumerate(dict.fromkeys(run_a.settings + run_b.settings))}
    common = sorted(keys_a & keys_b, key=lambda k: (order.get(k[1], 0), k[0]))
    rows = []
    for value, setting in common:
        a = sum_a[(sum_a["value"] == value) & (sum_a["setting"] == setting)].iloc[0]
        b = sum_b[(sum_b["value"] == value) & (sum_b["setting"] == setting)].iloc[0]
        ra, rb = reps_a.get((value, setting), []), reps_b.get((value, setting), [])
        row: dict[str, Any] = {
            "setting": setting,
            "value": value,
            "status_a": a["status"],
            "status_b": b["status"],
            "n_a": sum(len(r) for r in ra),
            "n_b": sum(len(r) for r in rb),
            "median_a_ms": a["median_ms"],
            "median_b_ms": b["median_ms"],
            "ratio": math.nan,
            "ratio_low": math.nan,
            "ratio_high": math.nan,
            "n_repeats_a": len(ra),
            "n_repeats_b": len(rb),
            # how much slower B's CPU ran than A's while this point was measured (probe time B / A)
            "speed_ratio": speed_b.get((value, setting), math.nan) / speed_a.get((value, setting), math.nan),
        }
        # a repeat of one sample has no spread to resample; the others still compare (one such repeat used to
        # turn the whole point into "~", which the --fail-if-slower gate then passed)
        ra, rb = [r for r in ra if len(r) >= 2], [r for r in rb if len(r) >= 2]
        if ra and rb:
            row["ratio"], row["ratio_low"], row["ratio_high"] = ratio_interval(ra, rb)
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
            "n_repeats_a",
            "n_repeats_b",
            "speed_ratio",
        ],
    )
    excludes_one = (table["ratio_low"] > 1) | (table["ratio_high"] < 1)
    table["significant"] = excludes_one & ((table["ratio"] - 1).abs() >= min_effect)
    table["verdict"] = [_verdict(r, min_effect) for r in table.to_dict("records")]
    if apart:
        warnings.append(f"The CPU speed probes of A and B do not count the same thing ({apart}): points are compared "
                        f"at whatever speed each CPU ran.")  # fmt: skip
    elif not probed:
        warnings.append("Run A or B has no CPU speed probes (older than them): points are compared at whatever "
                        "speed the CPU ran, and a VM's wandering speed reads as a change.")  # fmt: skip
    elif fit.told and fit.beta < 1:
        warnings.append(_partly_tracked(run_a, run_b, fit))
    single = [label for label, t in (("A", "n_repeats_a"), ("B", "n_repeats_b")) if len(table) and table[t].max() < 2]
    if single:
        warnings.append(
            f"Run {' and '.join(single)} measured each point once (one repeat): the CI sees only sample noise, "
            f"not run-to-run variance; repeat points (sweep.repeats) to trust a change."
        )
    cliffs_a, cliffs_b = tuple(summaries.cliffs_of(curves_a)), tuple(summaries.cliffs_of(curves_b))
    diffs = _env_diff(run_a, run_b)
    return Comparison(
        run_a=run_a,
        run_b=run_b,
        summary_a=sum_a,
        summary_b=sum_b,
        table=table,
        cliffs_a=cliffs_a,
        cliffs_b=cliffs_b,
        only_a=tuple(f"{s} at {format_value(v, run_a.axis)}" for v, s in sorted(keys_a - keys_b, key=str)),
        only_b=tuple(f"{s} at {format_value(v, run_b.axis)}" for v, s in sorted(keys_b - keys_a, key=str)),
        env_diff=tuple(d for d in diffs if not is_reading(d[0])),
        env_readings=tuple(d for d in diffs if is_reading(d[0])),
        warnings=tuple(warnings),
        min_effect=min_effect,
        one_speed=one_speed,
        beta=fit.beta if one_speed else 0.0,
        agreement=tuple(cliff_agreement(cliffs_a, cliffs_b, sorted(set(sum_a["value"]) | set(sum_b["value"])))),
    )


def cliff_agreement(
    cliffs_a: Sequence[Cliff], cliffs_b: Sequence[Cliff], values: Sequence[float]
) -> list[CliffAgreement]:
    """Per setting in both runs: the same cliff, or one measured step apart, or no cliff in either."""
    a, b = {c.setting: c for c in cliffs_a}, {c.setting: c for c in cliffs_b}
    out = []
    for s in [s for s in a if s in b]:
        la, lb = a[s].location, b[s].location
        agree = within_one_step(la, lb, values)
        if la is None and lb is None:
            why = "no cliff in either"
        elif la is None or lb is None:
            why = f"only {'B' if la is None else 'A'} finds a cliff"
        elif la == lb:
            why = "same pressure"
        else:
            why = "within one step" if agree else f"{number(la)} vs {number(lb)}"
        out.append(CliffAgreement(s, _cliff_short(a[s]), _cliff_short(b[s]), agree, why))
    return out


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


def format_text(cmp: Comparison) -> str:
    """A short terminal table: one line per point, then the cliffs."""
    t = cmp.table
    head = f"A: {cmp.run_a.name} ({cmp.run_a.path})\nB: {cmp.run_b.name} ({cmp.run_b.path})"
    lines = [head, *(f"! {w}" for w in cmp.warnings)]
    if t.empty:
        lines.append("No point was measured in both runs.")
    else:
        header = ("setting", "pressure", "A median", "B median", "CPU B/A",
                  "B/A at one speed [95% CI]" if cmp.one_speed else "B/A [95% CI]", "repeats", "verdict")  # fmt: skip
        body = []
        for r in table_rows(t):
            ci = f"{times(r.ratio)} [{times(r.ratio_low)}, {times(r.ratio_high)}]" if not math.isnan(r.ratio) else "-"
            p = f"{r.n_repeats_a}/{r.n_repeats_b}"
            body.append(
                (
                    str(r.setting),
                    format_value(r.value, cmp.run_a.axis),
                    ms(r.median_a_ms),
                    ms(r.median_b_ms),
                    times(r.speed_ratio) if not math.isnan(r.speed_ratio) else "-",
                    ci,
                    p,
                    ("* " if r.significant else "") + r.verdict,
                )
            )
        widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
        for cells in (header, *body):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        lines.append(
            f"* changed: B/A is of the interquartile means (the mean of the middle half of the samples, per repeat); "
            f"its 95% CI (hierarchical bootstrap over repeats, then samples) excludes 1 and it differs from 1 by at "
            f"least {cmp.min_effect:.0%}; {cmp.flagged} of {len(t)} points changed."
        )
        if cmp.one_speed:
            lines.append(f"Medians are as measured; B/A is at one CPU speed: every inference scaled by the CPU speed "
                         f"probe taken before it{cmp.power} (CPU B/A: how much slower B's CPU ran at that point).")
    for ag in cmp.agreement:
        lines.append(f"cliff {ag.setting}: A {ag.a} | B {ag.b} -> {'agree' if ag.agree else 'DIFFER'} ({ag.why})")
    if cmp.agreement:
        lines.append(f"cliffs agree in {cmp.agree_count} of {len(cmp.agreement)} settings (same, or within one step)")
    if cmp.env_diff:
        more = f"; and {len(cmp.env_diff) - 6} more" if len(cmp.env_diff) > 6 else ""
        lines.append("set-up differs: " + "; ".join(f"{k}: {a} -> {b}" for k, a, b in cmp.env_diff[:6]) + more)
    return "\n".join(lines)


@dataclass(frozen=True)
class Gate:
    """What counts as a regression of B against A, for CI pipelines (``bubbleup compare --fail-if-...``)."""

    #: A point is a regression when B is slower by at least this share (0.10: 10%) and the ratio's CI excludes
    #: 1 (pyperf compare_to's --min-speed, with the CI this comparison already has); None: latency not gated.
    slower: float | None = None
    #: A setting's cliff that moved to lower pressure by more than one measured step (or appeared, more than one
    #: step below the highest pressure A survived) is a regression: a one-step move is within what repeated
    #: runs of the main job show (README "Results you can trust").
    cliff_earlier: bool = False


def regressions(cmp: Comparison, gate: Gate) -> list[str]:
    """One line per regression of B against A under ``gate``; empty when there is none."""
    out = []
    axis = cmp.run_a.axis
    if gate.slower is not None:
        measured_b = set(zip(cmp.summary_b["value"], cmp.summary_b["setting"], strict=True))
        sa = cmp.summary_a
        for value, setting, status in zip(sa["value"], sa["setting"], sa["status"], strict=True):
            if status == "ok" and (value, setting) not in measured_b:  # a gate cannot pass what B never measured
                out.append(f"{setting} at {format_value(value, axis)}: not measured in B")
        for r in table_rows(cmp.table):
            if r.status_a == "ok" and r.status_b != "ok":
                out.append(f"{r.setting} at {format_value(r.value, axis)}: B {r.status_b} where A worked")
            elif r.ratio >= 1 + gate.slower and r.ratio_low > 1:
                ci = f"[95% CI {times(r.ratio_low)}, {times(r.ratio_high)}]"
                out.append(f"{r.setting} at {format_value(r.value, axis)}: B {times(r.ratio)} slower {ci}, more than "
                           f"{gate.slower:.0%}")  # fmt: skip
    if gate.cliff_earlier:
        values = sorted(set(cmp.summary_a["value"]) | set(cmp.summary_b["value"]))
        b_cliffs = {c.setting: c for c in cmp.cliffs_b}
        for a in cmp.cliffs_a:
            b = b_cliffs.get(a.setting)
            if b is None or b.location is None:
                continue
            # where A broke, or, with no cliff in A, just past the highest pressure it survived
            reference = a.location if a.location is not None else a.measured_max
            if reference is None or within_one_step(reference, b.location, values) or b.location >= reference:
                continue
            was = f"at {format_value(a.location, axis)}" if a.location is not None else "none"
            out.append(f"{a.setting}: cliff at {format_value(b.location, axis)} in B, {was} in A (more than one "
                       f"step lower)")  # fmt: skip
    return out
