"""Does bubbleup say the same thing tomorrow? The README's main job, run back to back, compared with itself.

    python benchmarks/bench_reproducibility.py [--runs 3] [--scenario scenarios/approxnet-count.yaml]
                                               [--keep DIR]

Runs the scenario ``--runs`` times back to back, exactly as a user would (``python -m bubbleup run``), then
prints, with the issue-10 targets beside them:

- settings whose cliff verdict agrees in every pair of runs (same pressure or one step apart; target: all);
- the largest coefficient of variation of one point's median across the runs (target <= 5%), as measured
  and at one CPU speed (each run's inferences scaled by their CPU speed probes to a common speed,
  ``bubbleup.analysis.speed``; compare itself compares at one speed); and the same for the statistic
  compare compares, the mean of the repeats' interquartile means;
- the main job's wall time per run (target <= 5 minutes on 2 cores);
- the share of points ``bubbleup compare`` flags as changed on each A/A pair (target <= 5%);
- the share it flags when one run's timed latencies are multiplied by 1.2 (a 20% slower workload,
  made on purpose by rewriting a copy of that run's samples.csv; target: every point). This checks
  compare's sensitivity on real run-to-run noise; it is not a slower workload process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from bubbleup.analysis import speed
from bubbleup.analysis.compare import compare_runs
from bubbleup.analysis.stats import IQM, replicate_statistic
from bubbleup.analysis.summary import find_cliffs, setting_curves, summarise
from bubbleup.store.reader import Run, load_run

ROOT = Path(__file__).resolve().parents[1]


def run_once(scenario: Path, out: Path) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "bubbleup", "run", str(scenario), "--out", str(out), "-q"], cwd=ROOT,
                   check=True)  # fmt: skip
    return time.monotonic() - t0


def slowed_copy(run_dir: Path, dest: Path, factor: float) -> Path:
    """A copy of ``run_dir`` whose timed latencies are ``factor`` times longer (points.csv is rebuilt by analysis)."""
    shutil.rmtree(dest, ignore_errors=True)  # a second analysis of the same runs starts afresh
    shutil.copytree(run_dir, dest)
    samples = pd.read_csv(dest / "samples.csv", dtype={"info": str})
    timed = samples["phase"] == "timed"
    samples.loc[timed, "latency_ms"] = samples.loc[timed, "latency_ms"] * factor
    samples.to_csv(dest / "samples.csv", index=False)
    for report in dest.glob("*.html"):
        report.unlink()
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "approxnet-count.yaml")
    p.add_argument("--keep", type=Path, help="keep the run directories here (default: a temporary directory)")
    p.add_argument("--analyse", type=Path, metavar="DIR",
                   help="run nothing: analyse DIR/run1..runN of an earlier --keep (wall times from the manifests)")
    args = p.parse_args()
    base = args.analyse or args.keep or Path(tempfile.mkdtemp(prefix="bench-repro-"))
    base.mkdir(parents=True, exist_ok=True)
    dirs, walls = [], []
    for i in range(args.runs):
        d = base / f"run{i + 1}"
        if args.analyse:
            m = load_run(d).manifest
            walls.append((dt.datetime.fromisoformat(m.finished_at) - dt.datetime.fromisoformat(m.started_at))
                         .total_seconds() if m.finished_at and m.started_at else float("nan"))  # fmt: skip
        else:
            walls.append(run_once(args.scenario, d))
            print(f"run {i + 1}: {walls[-1] / 60:.2f} min", flush=True)
        dirs.append(d)
    runs = [load_run(d) for d in dirs]

    # Verdicts, per setting, in every run.
    verdicts = pd.DataFrame({f"run {i + 1}": {c.setting: c for c in find_cliffs(r)} for i, r in enumerate(runs)})
    pairs = list(itertools.combinations(range(len(runs)), 2))
    comparisons = {(i, j): compare_runs(runs[i], runs[j]) for i, j in pairs}
    agree = {s: all(next(a for a in comparisons[pair].agreement if a.setting == s).agree for pair in pairs)
             for s in verdicts.index}  # fmt: skip
    print("\nsetting        " + "  ".join(f"{c:>14}" for c in verdicts.columns) + "  agree")
    for s, row in verdicts.iterrows():
        words = [f"{'at ' + format(c.at, 'g') if c.found else 'none':>14}" for c in row]
        print(f"{s:<15}" + "  ".join(words) + f"  {'yes' if agree[s] else 'NO'}")

    # A point's statistic across runs: the median as measured and at one CPU speed (every run scaled to their common
    # median probe by the elasticity fitted on all of them, as compare scales a pair), and compare's statistic (the
    # mean of the repeats' IQMs) at one speed.
    def points(r: Run) -> pd.DataFrame:
        """Per (setting, value): the pooled median (points.csv's) and the mean of the repeats' IQMs."""
        summary = summarise(r)
        iqms = pd.Series({(c.setting, p.value): replicate_statistic(p.replicates(), IQM)
                          for c in setting_curves(r, summary) for p in c.points if p.by_repeat})  # fmt: skip
        return pd.DataFrame({"median": summary.set_index(["setting", "value"])["median_ms"], "iqm": iqms})

    def cv_across(tables: list[pd.DataFrame], column: str) -> pd.Series:
        values = pd.concat([t[column].rename(i) for i, t in enumerate(tables)], axis=1)
        return values.std(axis=1, ddof=1) / values.mean(axis=1)

    reference = float(np.median([speed.reference_ns(r) for r in runs]))
    fit = speed.elasticity(*(r.samples for r in runs))
    raw, at_one_speed = [points(r) for r in runs], [points(speed.adjusted(r, reference, fit.beta)) for r in runs]
    cv = cv_across(raw, "median")
    cv_speed, cv_iqm = cv_across(at_one_speed, "median"), cv_across(at_one_speed, "iqm")
    # (setting, value) index labels, which pandas types as Hashable
    worst, worst_speed, worst_iqm = (cast(tuple[str, float], c.idxmax()) for c in (cv, cv_speed, cv_iqm))

    flagged = [comparisons[pair].flagged / max(1, len(comparisons[pair].table)) for pair in pairs]
    slow = slowed_copy(dirs[-1], base / "run-slowed", 1.2)
    cmp_slow = compare_runs(runs[0], load_run(slow))
    slow_share = cmp_slow.flagged / max(1, len(cmp_slow.table))
    missed = cmp_slow.table[~cmp_slow.table["significant"]]

    n_agree = sum(agree.values())
    print("\nfigure                                         measured        target")
    print(f"settings whose verdict agrees in all runs      {n_agree} of {len(agree):<10} all, within one step")
    same = sum(len({c.location for c in row}) == 1 for _, row in verdicts.iterrows())
    print(f"  the same cliff in every run                  {same} of {len(agree)}")
    print(f"largest CV of a point's median across runs     {cv.max():.1%} ({worst[0]} at {worst[1]:g})   <= 5%")
    print(f"  the same at one CPU speed                    {cv_speed.max():.1%} ({worst_speed[0]} at "
          f"{worst_speed[1]:g}; the probe to the power {fit.beta:.2f}, fitted on all runs' repeats)")  # fmt: skip
    print(f"median CV of a point's median across runs      {np.median(cv):.1%}; at one CPU speed "
          f"{np.median(cv_speed):.1%}")  # fmt: skip
    print(f"the same for compare's statistic (IQM)        {cv_iqm.max():.1%} ({worst_iqm[0]} at {worst_iqm[1]:g}); "
          f"median {np.median(cv_iqm):.1%}; above 5%: {int((cv_iqm > 0.05).sum())} of {len(cv_iqm)}")  # fmt: skip
    over = cv_speed[cv_speed > 0.05]
    print(f"points above 5% at one CPU speed               {len(over)} of {len(cv_speed)}: "
          + (", ".join(f"{k[0]} at {k[1]:g} ({c:.0%})" for k, c in over.sort_values(ascending=False).items()  # type: ignore[index]
                       )
             or "none"))  # fmt: skip
    print(f"main job wall time per run                     {', '.join(f'{w / 60:.1f}' for w in walls)} min"
          f"   <= 5 min")  # fmt: skip
    print(f"points compare flags, A/A pairs                {', '.join(f'{f:.0%}' for f in flagged)}"
          f"   <= 5%")  # fmt: skip
    # A whole run measured in a slower spell of the machine moves every point alike: the pair's median B/A shows it.
    shifts = [float(comparisons[pair].table["ratio"].median()) for pair in pairs]
    each = (f"run {a + 1} vs {b + 1} {r:.3f}x" for (a, b), r in zip(pairs, shifts, strict=True))
    print("  median B/A over each pair's points: " + ", ".join(each))
    print(f"points compare flags, run 1 vs run {len(runs)} x 1.2       {slow_share:.0%}          100%")
    if len(missed):
        print("  missed: " + ", ".join(f"{r.setting} at {r.value:g} ({r.ratio:.2f}x [{r.ratio_low:.2f}, "
                                      f"{r.ratio_high:.2f}])" for r in missed.itertuples()))  # fmt: skip
    why = (f"yes, each inference scaled by its probe to the power {cmp_slow.beta:.2f}" if cmp_slow.one_speed else
           "no: raw latencies (a run has no probes, or latency did not follow them between repeats)")  # fmt: skip
    print(f"  compare at one CPU speed: {why}")
    for i, r in enumerate(runs, 1):
        f = speed.facts(r)
        e = f.elasticity
        print(f"  run {i}: latency followed the probe to the power {e.beta:.2f} between repeats; repeats "
              f"{e.spread_raw:.1%} apart as measured, {e.spread_scaled:.1%} so: "
              f"{'judged at one speed' if f.adjusts else 'judged raw'}")  # fmt: skip
    print(f"\nrun directories: {base}")


if __name__ == "__main__":
    main()
