"""Build fake but contract-conforming run directories from a curve spec, for analysis and report tests.

A curve spec gives each setting's true median latency (ms) at each sweep value; samples are
drawn lognormally around it (``noise`` is the sigma of log latency), so the true median is
known exactly and a detector's answer can be checked against it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bubbleup.store.records import POINT_COLUMNS, SAMPLE_COLUMNS


def _nearest_rank(x: np.ndarray, p: float) -> float:
    return float(np.sort(x)[max(1, math.ceil(p / 100 * len(x))) - 1])


def make_run(
    root: Path,
    curves: Mapping[str, Sequence[float]],
    values: Sequence[float],
    *,
    axis: str = "count",
    repeats: int = 1,
    n: int = 40,
    noise: float = 0.05,
    seed: int = 0,
    failed: Mapping[tuple[str, float], str] | None = None,
    missing: Iterable[tuple[int, float]] = (),
    status: str = "complete",
    bubble_size_mb: float = 512,
    bubble_count: int = 1,
    bubbles: Sequence[Mapping[str, Any]] | None = None,
    telemetry: bool = True,
    warmup: int = 2,
    name: str = "fake",
    repeat_scale: Mapping[tuple[int, str, float], float] | None = None,
    accuracy: Mapping[str, float] | None = None,
    cpu_demand: Mapping[str, Any] | None = None,
    probe_ns: float | None = 400_000.0,
    slow_cpu: Mapping[tuple[int, float], float] | None = None,
    probe_scale: Mapping[tuple[int, float], float] | None = None,
) -> Path:
    """Write a run directory under ``root`` and return its path.

    ``failed`` maps (setting, value) to a status (``failed``/``timeout``) applied to every
    repeat; ``missing`` lists planned (repeat, value) points that never ran (a partial run);
    ``repeat_scale`` multiplies one repeat's latencies at one (setting, value) (drift).
    ``accuracy`` maps a setting to its share of right answers: timed inference i runs on sample i, right when
    i < share x n (so every point sees the same n frames, as a deterministic network would answer them).
    ``cpu_demand`` is the manifest's (cores the run may use, ``duty_per_set``), as the orchestrator writes it.
    ``bubble_count`` is the size sweep's ``sweep.count``. ``bubbles`` makes the pressure a set of kinds
    (``bubbles:`` in the scenario) started together, as the orchestrator does: each point then runs
    ``kinds x count`` bubbles, and a count sweep's size is the set's largest region.
    A curve named ``label:setting`` belongs to workload ``label`` (a run measuring several workloads);
    other names belong to one workload labelled ``synthetic``.
    Every sample carries the CPU speed probe ``probe_ns`` (None: a run older than the probe); ``slow_cpu`` maps
    (repeat, value) to a factor by which the CPU ran slower there (latency and probe alike, as a VM's speed
    state does); ``probe_scale`` multiplies only the probe at (repeat, value).
    """
    rng = np.random.default_rng(seed)
    failed = dict(failed or {})
    missing = {(int(r), float(v)) for r, v in missing}
    repeat_scale = dict(repeat_scale or {})
    settings = list(curves)
    owner = {name: tuple(name.split(":", 1)) if ":" in name else ("synthetic", name) for name in settings}
    labels = list(dict.fromkeys(w for w, _ in owner.values()))
    step_of = {name: [n for n in settings if owner[n][0] == owner[name][0]].index(name) for name in settings}
    plan = []
    for r in range(repeats):
        order = list(values) if r % 2 == 0 else list(reversed(values))  # interleaved, like the orchestrator
        plan += [[r, v] for v in order]  # (repeat, value), as the orchestrator writes it
    kinds = len(bubbles) if bubbles else 1
    fixed_size = max(float(b.get("size_mb") or 0) for b in bubbles) if bubbles else bubble_size_mb
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    samples, points, t = [], [], 0.0
    for pid, item in enumerate(plan, start=1000):
        r, v = item[0], float(item[1])
        if (r, v) in missing:
            continue
        slow = (slow_cpu or {}).get((r, v), 1.0)
        probe = probe_ns * slow * (probe_scale or {}).get((r, v), 1.0) if probe_ns is not None else None
        count = kinds * (v if axis == "count" else bubble_count)
        size = fixed_size if axis == "count" else v
        rss = 150.0
        for setting in settings:
            step = step_of[setting]
            true = curves[setting][list(values).index(item[1])]
            true *= repeat_scale.get((r, setting, v), 1.0) * slow
            st = failed.get((setting, v), "ok")
            rss += 40.0 * (step + 1)
            common = {"repeat": r, "axis": axis, "value": v, "bubble_count": count, "bubble_size_mb": size}
            common.update(workload=owner[setting][0], step=step, setting=owner[setting][1], worker_pid=pid, info="",
                          speed_ns=probe)  # fmt: skip
            lat = np.array([])
            if st == "ok":
                for i in range(warmup):
                    t += 0.05
                    samples.append(
                        {
                            **common,
                            "phase": "warmup",
                            "iteration": i,
                            "first_use": int(i == 0),
                            "latency_ms": true * 3,
                            "rss_mb": rss - 20 + 10 * i,
                            "t_s": round(t, 4),
                        }
                    )
                lat = true * np.exp(rng.normal(0.0, noise, n))
                share = (accuracy or {}).get(setting)
                for i, x in enumerate(lat):
                    t += x / 1000
                    right = {} if share is None else {"sample": i, "info": json.dumps({"correct": i < share * n})}
                    samples.append(
                        {
                            **common,
                            **right,
                            "phase": "timed",
                            "iteration": i,
                            "first_use": 0,
                            "latency_ms": float(x),
                            "rss_mb": rss + rng.normal(0, 0.5),
                            "t_s": round(t, 4),
                        }
                    )
            row = {k: common[k] for k in ("repeat", "axis", "value", "bubble_count", "bubble_size_mb", "workload")}
            row.update(
                step=step,
                setting=owner[setting][1],
                status=st,
                n=len(lat),
                select_ms=3.0,
                rss_mb_max=rss + 1,
                bubbles_rss_mb=count * size,
                error="" if st == "ok" else f"worker {st} (fake)",
            )
            if len(lat):
                row.update(
                    median_ms=float(np.median(lat)),
                    ci_low_ms=float(np.median(lat)) * 0.98,
                    ci_high_ms=float(np.median(lat)) * 1.02,
                    mean_ms=float(lat.mean()),
                    p90_ms=_nearest_rank(lat, 90),
                    p95_ms=_nearest_rank(lat, 95),
                    p99_ms=_nearest_rank(lat, 99),
                    min_ms=float(lat.min()),
                    max_ms=float(lat.max()),
                )
            points.append(row)
        t += 0.5  # bubbles down, next point's bubbles up
    pd.DataFrame(samples, columns=list(SAMPLE_COLUMNS)).to_csv(run_dir / "samples.csv", index=False)
    pd.DataFrame(points, columns=list(POINT_COLUMNS)).to_csv(run_dir / "points.csv", index=False)
    if telemetry:
        ts = np.arange(0.0, t + 0.25, 0.25)
        pd.DataFrame(
            {
                "repeat": 0,  # the real sampler tags each row with the point it ran in; they are not measures
                "value": 0,
                "t_s": ts,
                "cpu_percent": np.clip(50 + 40 * np.sin(ts) + rng.normal(0, 5, len(ts)), 0, 100),
                "mem_available_mb": 20000 - 100 * ts,
                "psi_cpu_some_avg10": np.abs(rng.normal(5, 2, len(ts))),
            }
        ).to_csv(run_dir / "telemetry.csv", index=False)
    sweep = {"axis": axis, "values": list(values), "count": bubble_count, "repeats": repeats, "settle_s": 0.5}
    bubble = None if bubbles else {"size_mb": bubble_size_mb, "cpu_duty": 1.0, "pattern": "stream"}
    plain = [owner[name][1] for name in settings]
    workload = {"kind": "synthetic", "settings": plain, "inferences_per_setting": n, "warmup": warmup}
    manifest = {
        "schema_version": 1,
        "bubbleup_version": "0.1.0",
        "name": name,
        "status": status,
        "started_at": "2025-01-01T10:00:00+00:00",
        "finished_at": None if status == "running" else "2025-01-01T10:05:00+00:00",
        "scenario_given": {
            "name": name,
            "workload": {"kind": "synthetic"},
            "sweep": {"axis": axis, "values": list(values)},
        },
        "scenario_effective": {
            "name": name,
            "workload": workload,
            "bubble": bubble,
            "bubbles": [dict(b) for b in bubbles] if bubbles else None,
            "sweep": sweep,
            "limits": {},
        },
        "plan": plan,
        "environment": {
            "cpu_model": "Fake CPU @ 2.0GHz",
            "cores": 2,
            "governor": "performance",
            "memory_total_mb": 24000,
            "kernel": "6.1.0-fake",
            "python": "3.11.7",
            "autogroup": 1,
        },
        "workload_metadata": {label: {"intra_op_threads": 2, "inter_op_threads": 1} for label in labels},
        "workloads": labels,
        "steps": [
            {"workload": owner[x][0], "setting": owner[x][1], "warmup": warmup, "inferences": n} for x in settings
        ],
        "settings": list(dict.fromkeys(plain)),
        "cpu_demand": dict(cpu_demand) if cpu_demand else None,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run_dir
