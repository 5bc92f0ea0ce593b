"""The reporter's sensitivity curve on this machine, and the runs that measure and use it.

Bubble-Up needs one machine-specific measurement before it can score anything: how a small, known
kernel (the reporter, ``workloads.reporter``) slows down as the Bubble-Up bubble grows beside it.
``bubbleup calibrate --reporter`` measures that as an ordinary size-sweep run (reporter on the
workload's CPUs, one bubble-up bubble apart from it, every size a point) and stores the curve with
the machine's fingerprint (``environment.fingerprint``) in ``reports/reporter.json``. ``bubbleup
score`` then runs the reporter, with the very options it was calibrated with, alone and beside the
co-runner (a ``kind: command`` bubble on the same CPUs the bubble had), alternating, and reads the
score off the curve (:func:`bubbleup.analysis.prediction.score_of_run`).
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bubbleup.analysis.sensitivity import SensitivityCurve, SensitivityPoint
from bubbleup.machine.environment import fingerprint, fingerprint_differences
from bubbleup.pressure.kinds import llc_bytes

MIB = 1 << 20

DEFAULT_PATH = Path("reports") / "reporter.json"
#: From inside one core's L2 (1 MiB) to four times this machine's LLC, whatever its size (a 32 MiB LLC
#: gives 0, 1, 2, ..., 64, 128; a 300 MiB one ..., 32, 75, 150, 300, 600, 1200: see
#: ``specs.llc_multiple``); 0 is the bubble burning its CPU with no memory walk: the reporter's pace with
#: no memory pressure, the curve's base.
SIZES: tuple[int | str, ...] = (0, 1, 2, 4, 8, 16, 32, "1/4 llc", "1/2 llc", "1 llc", "2 llc", "4 llc")
#: The reporter as every curve and score runs it (about 0.5 ms an inference). Short steps, many
#: repeats: a memory-bound kernel on these VMs swings 25% within seconds, so what cancels that drift
#: is measuring each point many times, interleaved with the others (repeats alternate their order),
#: with repeats as the replicates of the hierarchical bootstrap.
WORKLOAD: dict[str, Any] = {
    "kind": "reporter", "inferences_per_setting": 50, "warmup": 10,
    "precision": {"target": 0.03, "max_inferences": 2000, "max_seconds": 0.5},
    "options": {"working_set_mb": max(4, llc_bytes() // MIB // 2)},  # half the LLC: alone, it fits
}  # fmt: skip
#: Repeats of a curve's size sweep and of a score's alone/beside pair. The curve is measured once per machine
#: and every score is read off it: on the EPYC VM six repeats left its points' 95% CIs 0.2-0.9 wide (QoS) in four
#: runs of an afternoon, from the host's own cache traffic, not from drift a paired design could cancel (README
#: "Where the reporter's noise comes from"); twelve halve the variance for about 40 s more, once.
CURVE_REPEATS = 12
SCORE_REPEATS = 8


@dataclass(frozen=True)
class ReporterCurve:
    curve: SensitivityCurve
    fingerprint: dict[str, Any]
    created_at: str
    workload: dict[str, Any]  # the reporter workload spec the curve was measured with (a score reuses it)
    run_dir: str


def curve_scenario(sizes: Sequence[int | str] = SIZES, repeats: int = CURVE_REPEATS) -> dict[str, Any]:
    """The size sweep that measures the reporter's curve (a scenario, as a user could have written it)."""
    return {
        "name": "reporter-curve",
        "description": "the reporter beside one Bubble-Up bubble of every size, on the other CPUs",
        "workload": WORKLOAD,
        "bubble": {"kind": "bubble-up"},
        "cpus": {"placement": "apart"},
        "sweep": {"axis": "size_mb", "values": list(sizes), "repeats": repeats, "settle_s": 0.3},
    }


#: A co-runner: one program, or a mix of several (``check-prediction --mix``), each a ``kind: command`` bubble in a
#: session of its own, as separately started services are; a kernel that shares CPU time between sessions
#: (:meth:`bubbleup.analysis.cpu_curve.CpuCurve.load`) weighs each program as one task.
Programs = Sequence[Sequence[str]]


def label(programs: Programs) -> str:
    """The co-runner as a user would type it: ``stress-ng --cpu 1 + xz -9 big.file``."""
    return " + ".join(shlex.join(p) for p in programs)


def run_name(prefix: str, programs: Programs) -> str:
    """``PREFIX-PROGRAM`` (``-and-N`` for a mix of N more): a scenario name (letters, digits, ``._-``) from the
    co-runner's first program."""
    program = Path(programs[0][0]).name if programs and programs[0] else "none"
    more = f"-and-{len(programs) - 1}" if len(programs) > 1 else ""
    return f"{prefix}-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in program)[:60] + more


def pressure(programs: Programs, startup_s: float) -> dict[str, Any]:
    """The scenario's pressure for ``programs``: one command bubble, or a set of them (one copy at count 1)."""
    bubbles = [{"kind": "command", "command": list(p), "startup_s": startup_s} for p in programs]
    return {"bubble": bubbles[0]} if len(bubbles) == 1 else {"bubbles": bubbles}


#: Every run of a co-runner stops at its first failure to run: it would fail every repeat the same way.
STOP_ON_FAILURE: dict[str, Any] = {"limits": {"stop_on_pressure_failure": True}}


def score_scenario(programs: Programs, workload: dict[str, Any], repeats: int = SCORE_REPEATS,
                   startup_s: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """The reporter alone (0) and beside one copy of the co-runner (1), ``repeats`` times in alternating order."""
    return {
        "name": run_name("score", programs),
        "description": f"bubble score of: {label(programs)}",
        "workload": workload,
        **pressure(programs, startup_s),
        "cpus": {"placement": "apart"},
        "sweep": {"axis": "count", "values": [0, 1], "repeats": repeats, "settle_s": 0.3},
        **STOP_ON_FAILURE,
    }


#: Seconds a co-runner runs alone, unpinned, to measure the cores it keeps busy (its CPU demand).
DEMAND_WINDOW_S = 3.0


def demand_scenario(command: Sequence[str], window_s: float = DEMAND_WINDOW_S,
                    startup_s: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """One copy of ``command`` unpinned (``cpus: free``) for ``window_s`` beside a workload that costs nothing
    (one inference of microseconds), so its ``bubbles.csv`` ``core_share`` is the cores it keeps busy when
    nothing confines it."""
    return {
        "name": run_name("demand", [command]),
        "description": f"CPU demand, alone and unpinned, of: {shlex.join(command)}",
        "workload": {"kind": "synthetic", "settings": "all", "inferences_per_setting": 1, "warmup": 0,
                     "options": {"working_sets_kb": [1], "rounds": 1}},
        **pressure([command], startup_s),
        "cpus": {"placement": "free"},
        "sweep": {"axis": "count", "values": [1], "repeats": 1, "settle_s": window_s},
        "telemetry": {"enabled": False},
        **STOP_ON_FAILURE,
    }  # fmt: skip


def save(path: Path, curve: SensitivityCurve, run_dir: Path, workload: dict[str, Any]) -> ReporterCurve:
    made = ReporterCurve(curve, fingerprint(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                         workload, str(run_dir))  # fmt: skip
    data = {"created_at": made.created_at, "fingerprint": made.fingerprint, "run_dir": made.run_dir,
            "workload": workload,
            "curve": {"setting": curve.setting, "percentile": curve.percentile, "base_size_mb": curve.base_size_mb,
                      "base_latency_ms": curve.base_latency_ms,
                      "points": [asdict(p) for p in curve.points]}}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return made


def load(path: Path) -> ReporterCurve:
    """The stored reporter curve; ValueError (one line, naming the file) when there is none or it is not one."""
    try:
        data = json.loads(path.read_text())
        c = data["curve"]
        curve = SensitivityCurve(str(c["setting"]), float(c["percentile"]), float(c["base_size_mb"]),
                                 float(c["base_latency_ms"]),
                                 tuple(SensitivityPoint(**p) for p in c["points"]))  # fmt: skip
        return ReporterCurve(curve, dict(data["fingerprint"]), str(data["created_at"]), dict(data["workload"]),
                             str(data.get("run_dir", "")))  # fmt: skip
    except FileNotFoundError:
        raise ValueError(f"{path}: no reporter curve here; measure one first: bubbleup calibrate --reporter") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a reporter curve ({type(exc).__name__}: {exc})") from None


def flat_warning(curve: SensitivityCurve) -> str:
    """A warning when the reporter's curve never falls beyond its own CI ("" when some size does): then any
    co-runner's slowdown of the reporter lies within the curve's noise, and a score reads noise. Measured on a
    Xeon VM with a 300 MiB L3: QoS 0.92-1.06 at every size, and ``sleep`` scored 1200 MiB (interval 0-1200)."""
    pressed = [p for p in curve.points if p.size_mb != curve.base_size_mb]
    if not pressed or any(p.qos_high < 1.0 for p in pressed):
        return ""
    low = min(pressed, key=lambda p: p.qos)
    return (f"the reporter's curve does not fall beyond its own noise on this machine (lowest QoS {low.qos:.2f} "
            f"[{low.qos_low:.2f}, {low.qos_high:.2f}] at {low.size_mb:g} MiB): a bubble score here cannot tell "
            f"co-runners apart")


def machine_mismatch(made: ReporterCurve) -> list[str]:
    """How this machine differs from the one the curve was measured on (empty: the same kind)."""
    return fingerprint_differences(made.fingerprint, fingerprint())
