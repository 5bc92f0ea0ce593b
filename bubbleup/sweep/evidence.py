"""The evidence of what each bubble delivered at a point: its ``bubbles.csv`` rows.

Kept apart from the orchestrator's sweep loop: bookkeeping at the edge of a point that decides nothing
about the sweep; analysis.validity judges a bubble that missed its target from these rows.
"""

from __future__ import annotations

import math
from typing import Any

from bubbleup.machine import telemetry
from bubbleup.pressure.pool import BubblePool
from bubbleup.store.records import BubbleRow


def bubble_rows(repeat: int, value: int, pool: BubblePool, delivered: list[dict[str, Any]],
                sampler: telemetry.Sampler | None, stopped_epoch: float,
                run_epoch: float) -> list[BubbleRow]:  # fmt: skip
    """bubbles.csv rows for one point: each bubble's targets, what it measured at ready, the least RSS the
    sampler saw between ready and the stop, what it said on stop it delivered (NaN where unknown), and the
    pool's log of when it was started, ready and stopped (seconds since ``run_epoch``)."""
    rows = []
    for b, said in zip(pool.bubbles, delivered, strict=True):
        spec, ready = b.spec, b.ready or {}
        rate = spec.rate_mb_s if spec is not None and spec.rate_mb_s is not None else math.nan
        duty = spec.cpu_duty if spec is not None and spec.cpu_duty is not None and math.isnan(rate) else math.nan
        rss_ready = float(ready.get("rss_mb", math.nan))
        rss_min, n = math.nan, 0
        if sampler is not None and ready:
            rss_min, n = sampler.min_rss_mb(b.pid, b.ready_epoch, min(stopped_epoch, b.stop_epoch)
                                            if not math.isnan(b.stop_epoch) else stopped_epoch)  # fmt: skip
        region = float(ready.get("region_mb", math.nan))
        rows.append(BubbleRow(
            repeat=repeat, value=value, index=b.index, pid=b.pid, kind=spec.kind if spec else "",
            backend=spec.backend if spec else "", size_mb=b.size_mb, region_mb=round(region, 3),
            baseline_mb=round(float(ready.get("baseline_mb", math.nan)), 3), rss_ready_mb=round(rss_ready, 3),
            rss_min_mb=round(rss_min, 3), region_min_mb=round(region - (rss_ready - rss_min), 3), rss_samples=n,
            duty=duty, core_share=round(float(said.get("core_share", math.nan)), 4), rate_mb_s=rate,
            mb_per_s=round(float(said.get("mb_per_s", math.nan)), 2),
            wall_s=round(float(said.get("wall_s", math.nan)), 3),
            fault=str(ready.get("fault", "")),
            accesses_per_s=round(float(said.get("accesses_per_s", math.nan)), 1),
            rss_peak_mb=round(float(said.get("rss_peak_mb", math.nan)), 3),
            started_s=round(b.started_epoch - run_epoch, 6), ready_s=round(b.ready_epoch - run_epoch, 6),
            stopped_s=round(b.stop_epoch - run_epoch, 6),
        ))  # fmt: skip
    return rows
