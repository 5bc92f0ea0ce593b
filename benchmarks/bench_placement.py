"""Where bubbles sit decides the shape of a count sweep: the main job's sweep under each placement, side by side.

    python benchmarks/bench_placement.py [--settings LL,HH] [--values 0,1,2,3,4,5,6] [--repeats 2]

For each (CPU placement, scheduling placement) it runs the main job's bubble-count sweep (ApproxNet,
512 MiB full-core streaming bubbles) and prints, per setting, the median latency at every count and
how monotone the dial is: the number of count steps where the median *falls* by more than the two
points' 95% CIs allow (0 = a monotone dial), and the largest such fall as a ratio. Configurations
run interleaved (ABAB... per repeat) so the VM's speed drift spreads over all of them.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import yaml

import bubbleup
from bubbleup.analysis.summary import summarise

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    ("free", "own-session"),
    ("spread", "own-session"),
    ("apart", "own-session"),
    ("free", "shared-session"),
    ("spread", "shared-session"),
]


def scenario(cpus: str, session: str, settings: list[str], values: list[int]) -> dict:
    data = yaml.safe_load((ROOT / "scenarios" / "approxnet-count.yaml").read_text())
    data = copy.deepcopy(data)
    data["name"] = f"placement-{cpus}-{session}"
    data["workload"]["settings"] = settings
    # The sweep these placements were chosen on (README "Where bubbles sit"): the earlier main job's
    # two-thread workload beside full-core streaming bubbles, where placement decides the shape.
    data["workload"].pop("options", None)
    data["bubble"] = {"kind": "combined", "size_mb": 512, "cpu_duty": 1.0, "pattern": "stream", "placement": session}
    data["sweep"].update(values=values, repeats=1)
    data["cpus"] = {"placement": cpus}
    return data


def falls(rows) -> tuple[int, float]:
    """Steps where the median falls beyond both CIs (the later point's CI high below the earlier's CI low)."""
    rows = rows.sort_values("value")
    n, worst = 0, 1.0
    prev = None
    for r in rows.itertuples(index=False):
        if prev is not None and r.ci_high_ms < prev.ci_low_ms:
            n += 1
            worst = max(worst, prev.median_ms / r.median_ms)
        prev = r
    return n, worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="LL,HH")
    p.add_argument("--values", default="0,1,2,3,4,5,6")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    settings, values = args.settings.split(","), [int(v) for v in args.values.split(",")]
    results: dict[tuple[str, str], list] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = CONFIGS if rep % 2 == 0 else CONFIGS[::-1]
            for cpus, session in order:
                path = Path(tmp) / f"{cpus}-{session}-{rep}.yaml"
                path.write_text(yaml.safe_dump(scenario(cpus, session, settings, values)))
                run = bubbleup.run(bubbleup.Scenario.from_yaml(path), Path(tmp) / f"run-{cpus}-{session}-{rep}",
                                   report=False)  # fmt: skip
                results[(cpus, session)].append(summarise(run))
                print(f"  done: {cpus}/{session} repeat {rep + 1}", flush=True)
    print(f"\nmedian latency (ms) per bubble count {values}; falls = steps down beyond both CIs")
    canonical = list(dict.fromkeys(results[CONFIGS[0]][0]["setting"]))  # presets resolve to setting names
    for setting in canonical:
        print(f"\n{setting}")
        for cfg in CONFIGS:
            for rep, summary in enumerate(results[cfg]):
                rows = summary[summary["setting"] == setting]
                meds = " ".join(f"{m:6.1f}" for m in rows.sort_values("value")["median_ms"])
                n, worst = falls(rows)
                print(f"  {cfg[0]:>6s} {cfg[1]:<14s} r{rep + 1}: {meds}   falls {n} (worst {worst:.2f}x)")


if __name__ == "__main__":
    main()
