"""Kinds of pressure, and what each means in terms the bubble kernel runs.

A bubble kernel knows only: a region of ``size_mb``, a ``cpu_duty``, a memory ``pattern``
and an optional ``rate_mb_s``. Kinds are named presets over those, so every kind (and
every backend) is one mechanism:

| kind      | region                         | CPU            | walk    | notes                         |
|-----------|--------------------------------|----------------|---------|-------------------------------|
| combined  | size_mb (256)                  | cpu_duty (1.0) | stream  | the TX2 study's bubble        |
| cpu       | none                           | cpu_duty (1.0) | none    | pure compute                  |
| memory    | size_mb (256)                  | none           | none    | resident footprint only       |
| bandwidth | size_mb (4 x LLC, >= 64 MiB)   | as needed      | stream  | rate_mb_s held by feedback    |
| cache     | llc_fraction x LLC (1.0)       | cpu_duty (1.0) | random  | sized from this machine's LLC |
| bubble-up | size_mb (64)                   | cpu_duty (1.0) | mixed   | Mars et al.; apart from the workload |
| command   | what the program uses          | what it uses   | its own | a co-runner (pressure.corunner) |

Fields a kind fixes may be left out or given their fixed value; anything else is an
error naming the field, so a scenario never says one thing and measures another.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bubbleup.programs import not_a_program

if TYPE_CHECKING:
    from bubbleup.scenario import BubbleSpec

MIB = 1 << 20
#: What a bubble process holds before its region (the interpreter, numpy): measured 25-30 MiB. The pool's check
#: and the scenario's peak both count it per bubble.
BASELINE_MB = 32
FALLBACK_LLC_BYTES = 8 * MIB

DEFAULTS: dict[str, dict[str, Any]] = {
    "combined": {"size_mb": 256, "cpu_duty": 1.0, "pattern": "stream"},
    "cpu": {"size_mb": 0, "cpu_duty": 1.0, "pattern": "none"},
    "memory": {"size_mb": 256, "cpu_duty": 0.0, "pattern": "none"},
    "bandwidth": {"cpu_duty": 1.0, "pattern": "stream"},
    "cache": {"cpu_duty": 1.0, "pattern": "random", "llc_fraction": 1.0},
    "bubble-up": {"size_mb": 64, "cpu_duty": 1.0, "pattern": "mixed"},
    # A co-runner asks for nothing: its memory and CPU are measured (bubbles.csv, the stopped message).
    "command": {"size_mb": 0, "cpu_duty": 0.0, "pattern": "none"},
}
#: Fields a kind pins to one value (leaving them out is the same as giving that value).
FIXED: dict[str, dict[str, Any]] = {
    "cpu": {"size_mb": 0, "pattern": "none"},
    "memory": {"cpu_duty": 0.0, "pattern": "none"},
    "bandwidth": {"pattern": "stream"},
    "cache": {"pattern": "random"},
    "bubble-up": {"pattern": "mixed"},
    "command": {"size_mb": 0, "cpu_duty": 0.0, "pattern": "none"},
}


@lru_cache(maxsize=1)
def llc_bytes() -> int:
    """Size of the largest data/unified CPU cache, read from sysfs (8 MiB if the machine does not say)."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1024, "M": MIB, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best or FALLBACK_LLC_BYTES


def safe_mb(available_mb: float, max_fraction: float, reserve_mb: float) -> float:
    """What bubbles may hold of ``available_mb``: the lesser of ``limits.max_memory_fraction`` of it and it less
    ``limits.reserve_mb`` (never below 0). The scenario's check at start and the pool's at every point."""
    return max(0.0, min(available_mb * max_fraction, available_mb - reserve_mb))


def check(spec: BubbleSpec) -> None:
    """ValueError("field: problem") for a field the spec's kind contradicts or cannot use."""
    for field, value in FIXED.get(spec.kind, {}).items():
        given = getattr(spec, field)
        if given is not None and given != value:
            raise ValueError(f"{field}: a {spec.kind} bubble has {field} {value!r}; leave it out or pick another kind")
    if spec.kind == "cache" and spec.size_mb is not None:
        raise ValueError("size_mb: a cache bubble is sized by llc_fraction (of this machine's LLC), not size_mb")
    if spec.rate_mb_s is not None and spec.kind != "bandwidth":
        raise ValueError("rate_mb_s: only a bandwidth bubble holds a rate")
    if spec.llc_fraction is not None and spec.kind != "cache":
        raise ValueError("llc_fraction: only a cache bubble is sized from the LLC")
    if spec.kind == "command":
        if not spec.command:
            raise ValueError("command: a command bubble needs the program to run, e.g. command: [xz, -9, big.file]")
        missing = not_a_program(spec.command)
        if missing:
            raise ValueError(f"command: {missing}")
        if spec.backend != "builtin":
            raise ValueError("backend: a command bubble runs the program itself; leave backend out")
    elif spec.command is not None:
        raise ValueError(f"command: only a command bubble runs a program (this one is {spec.kind})")
    if spec.pattern == "mixed" and spec.kind != "bubble-up":
        raise ValueError("pattern: the mixed walk is the bubble-up kind's; use kind: bubble-up")
    if spec.backend == "stress-ng":
        if spec.kind == "bubble-up":
            raise ValueError("backend: stress-ng has no Bubble-Up walk (scattered + streaming); use builtin")
        eff = effective(spec)
        # whatever size_mb says: a size sweep gives the walk its swept sizes
        if eff.pattern != "none" and eff.cpu_duty not in (0.0, 1.0):
            raise ValueError(
                f"cpu_duty: stress-ng cannot duty-cycle a {eff.pattern} memory walk; use 0 or 1, or pattern none"
            )
        if eff.rate_mb_s is not None:
            raise ValueError("rate_mb_s: stress-ng cannot hold a bandwidth rate; use the builtin backend")


def effective(spec: BubbleSpec) -> BubbleSpec:
    """The spec with every kind default filled in (idempotent)."""
    fill = {k: v for k, v in DEFAULTS[spec.kind].items() if getattr(spec, k) is None}
    if spec.kind == "bandwidth" and spec.size_mb is None:
        fill["size_mb"] = max(64, 4 * llc_bytes() // MIB)
    if spec.kind == "cache":
        fraction = spec.llc_fraction if spec.llc_fraction is not None else fill["llc_fraction"]
        fill["size_mb"] = max(1, round(fraction * llc_bytes() / MIB))
    return spec.model_copy(update=fill) if fill else spec


def region_mb(spec: BubbleSpec) -> int:
    """An effective spec's region in MiB: :func:`effective` fills ``size_mb`` for every kind."""
    if spec.size_mb is None:
        raise ValueError(f"a {spec.kind} bubble spec without size_mb: pass it through effective() first")
    return spec.size_mb
