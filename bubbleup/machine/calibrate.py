"""``bubbleup calibrate``: what each kind of bubble really delivers on this machine, and what it costs others.

For every kind, one bubble runs alone for a window while we measure, from outside,
its resident region and core share, and take its own count of bytes walked (MB/s,
accesses/s). Then a fixed reference kernel is timed with the bubble running and
without, alternately: the ratio is the interference that kind inflicts.

Last, the command runs the *dial check* (:mod:`bubbleup.dial_check`, a sweep, so not this package's
business) and stores its verdict here too, where :func:`warnings_for` finds it.

Results go to a JSON file (default ``reports/calibration.json``). ``run`` records
which calibration it found in the manifest and warns about every bubble kind in
the scenario whose calibrated delivery missed its target by more than 10%.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import statistics
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bubbleup.machine.telemetry import core_share
from bubbleup.pressure.kinds import effective, llc_bytes, region_mb
from bubbleup.pressure.pool import BubblePool
from bubbleup.scenario import BubbleSpec

MIB = 1 << 20
TOLERANCE = 0.10


@dataclass(frozen=True)
class Probe:
    name: str
    spec: BubbleSpec


def probes() -> list[Probe]:
    """One representative bubble per kind (and per target worth checking)."""
    specs = {
        "cpu duty 0.5": BubbleSpec(kind="cpu", cpu_duty=0.5),
        "cpu duty 1.0": BubbleSpec(kind="cpu", cpu_duty=1.0),
        "memory 256 MiB": BubbleSpec(kind="memory", size_mb=256),
        "combined 256 MiB duty 1.0": BubbleSpec(kind="combined", size_mb=256, cpu_duty=1.0),
        "bandwidth 1000 MiB/s": BubbleSpec(kind="bandwidth", rate_mb_s=1000),
        "bandwidth unlimited": BubbleSpec(kind="bandwidth"),
        "cache 1.0 x LLC": BubbleSpec(kind="cache"),
        # The Bubble-Up bubble at three sizes: inside one core's L2, about the LLC, 4x beyond it.
        **{f"bubble-up {mb} MiB": BubbleSpec(kind="bubble-up", size_mb=mb) for mb in (1, 32, 128)},
    }
    return [Probe(name, effective(spec)) for name, spec in specs.items()]


class ReferenceKernel:
    """A fixed, memory-touching single-threaded kernel: sums a 2 x LLC array with a stride."""

    def __init__(self) -> None:
        self.data = np.ones(max(2 * llc_bytes() // 8, 1 << 20), dtype=np.int64)

    def run_ms(self) -> float:
        t0 = time.perf_counter_ns()
        int(self.data[::8].sum()) + int(self.data[1::16].sum())
        return (time.perf_counter_ns() - t0) / 1e6

    def median_ms(self, n: int) -> float:
        return statistics.median(self.run_ms() for _ in range(n))


def targets(spec: BubbleSpec) -> dict[str, float]:
    """What the spec asks for, in the units we measure."""
    out: dict[str, float] = {"region_mb": float(region_mb(spec))}
    if spec.rate_mb_s is not None:
        out["mb_per_s"] = spec.rate_mb_s
    elif spec.cpu_duty:
        out["core_share"] = spec.cpu_duty
    return out


def measure(probe: Probe, kernel: ReferenceKernel, window_s: float, reps: int) -> dict[str, Any]:
    base = [kernel.median_ms(reps)]
    with BubblePool.uniform(probe.spec, 1, region_mb(probe.spec)) as pool:
        pool.start()
        pool.wait_ready(120)
        share = core_share(pool.pids()[0], window_s)
        loaded = [kernel.median_ms(reps) for _ in range(2)]
        region = pool.resident_mb
        said = pool.stop()[0]
    base.append(kernel.median_ms(reps))
    delivered = {
        "region_mb": region,
        "core_share": share,
        "mb_per_s": said.get("mb_per_s", 0.0),
    }
    if "accesses_per_s" in said:  # the kernel counts its scattered accesses (random and mixed walks)
        delivered["accesses_per_s"] = said["accesses_per_s"]
    asked = targets(probe.spec)
    misses = {k: delivered[k] / v - 1 for k, v in asked.items() if v > 0 and abs(delivered[k] / v - 1) > TOLERANCE}
    return {
        "probe": probe.name,
        "kind": probe.spec.kind,
        "spec": probe.spec.model_dump(mode="json"),
        "asked": asked,
        "delivered": delivered,
        "misses": misses,
        "interference": statistics.median(loaded) / statistics.median(base),
    }


def calibrate(window_s: float = 2.0, reps: int = 30) -> dict[str, Any]:
    """Every probe's delivery and interference; ``dial`` is left for :func:`bubbleup.dial_check.check` to fill."""
    kernel = ReferenceKernel()
    kernel.median_ms(5)
    results = [measure(p, kernel, window_s, reps) for p in probes()]
    return {
        "dial": None,
        "host": socket.gethostname(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "llc_mb": llc_bytes() / MIB,
        "reference_kernel": "strided sums over a 2 x LLC int64 array",
        "tolerance": TOLERANCE,
        "results": results,
    }


def render(cal: dict[str, Any]) -> str:
    lines = [f"{'probe':28} {'asked':>22} {'delivered':>34}  {'slows reference':>15}"]
    for r in cal["results"]:
        asked = ", ".join(f"{k}={v:g}" for k, v in r["asked"].items())
        got = r["delivered"]
        delivered = f"region={got['region_mb']:.0f} share={got['core_share']:.2f} MiB/s={got['mb_per_s']:.0f}"
        flag = "  MISSED " + ", ".join(f"{k} by {v:+.0%}" for k, v in r["misses"].items()) if r["misses"] else ""
        lines.append(f"{r['probe']:28} {asked:>22} {delivered:>34}  {r['interference']:>14.2f}x{flag}")
    dial = cal.get("dial")
    if dial:
        curve = ", ".join(f"{v}: {m:.3g}" for v, m in dial["medians_ms"].items())
        lines.append(f"dial check ({dial['kernel']}), median ms by bubble count: {curve}")
        lines.append("  monotone: yes" if dial["monotone"] else "  WARNING: the dial is not monotone here: "
                     + "; ".join(dial["falls"]))  # fmt: skip
        if dial.get("run_dir"):
            lines.append(f"  its run: {dial['run_dir']}")
    return "\n".join(lines)


def load(path: Path) -> dict[str, Any]:
    """A calibration file as ``bubbleup calibrate`` wrote it; UserError in one line naming the file for
    anything else (a run must not go on believing it was checked against a calibration it could not read)."""
    from bubbleup.errors import UserError

    def refuse(problem: str) -> UserError:
        return UserError(f"{path}: {problem}; write it again with 'bubbleup calibrate --out {path}', or remove it")

    try:
        cal = json.loads(path.read_text())
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise refuse(f"not a calibration file (not JSON: {exc})") from None
    results = cal.get("results") if isinstance(cal, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise refuse("not a calibration file (no list of probe results)")
    if not isinstance(cal.get("dial") or {}, dict):
        raise refuse("not a calibration file (its dial check is not an object)")
    for r in results:
        if not isinstance(r.get("misses") or {}, dict):
            raise refuse(f"not a calibration file (probe {r.get('probe')!r}: misses is not an object)")
    return cal


def warnings_for(cal: dict[str, Any], kinds: Collection[str]) -> list[str]:
    """A warning for each calibrated probe of a kind the run uses that missed its target by more than 10%,
    and one when the calibration's dial check found a multi-threaded kernel getting faster with more bubbles."""
    out = []
    dial = cal.get("dial") or {}
    if dial and not dial.get("monotone", True):
        out.append(f"calibration ({cal.get('created_at')}): the pressure dial was not monotone for a two-thread "
                   f"kernel: {'; '.join(dial.get('falls', []))}")  # fmt: skip
    for r in cal.get("results", []):
        if r.get("kind") in kinds and r.get("misses"):
            missed = ", ".join(f"{k} by {v:+.0%}" for k, v in r["misses"].items())
            out.append(f"calibration ({cal.get('created_at')}): {r['probe']} bubbles missed their target: {missed}")
    return out
