"""How numbers, units and ratios are written for people: the one place, for analysis words and reports alike."""

from __future__ import annotations

import json
import math
from typing import Any


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None, missing: str = "?") -> str:
    """``3`` for whole numbers, ``2.5`` otherwise."""
    if _missing(value):
        return missing
    assert value is not None
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def plural(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def busiest(processes: list[dict[str, Any]] | None) -> str:
    """Who used the CPU (a start check's ``busiest``), for a sentence: `` (busiest: xz pid 4242 0.98 cores)``."""
    named = [f"{p.get('name')} pid {p.get('pid')} {float(p.get('cores') or 0):.2f} cores" for p in processes or []]
    return f" (busiest: {', '.join(named)})" if named else ""


def sig3(value: float) -> str:
    """Three significant figures, for a number known no better (an interpolated bubble score, a predicted
    latency): ``24.4``, ``0.953``, ``1200`` (a whole number above 1000, not ``1.2e+03``)."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def format_value(value: float | None, axis: str, unit: bool = True) -> str:
    """A sweep value as people write it: ``3`` bubbles, ``512 MiB``."""
    text = number(value, missing="-")
    return f"{text} MiB" if unit and axis == "size_mb" and text != "-" else text


def pressure_unit(axis: str, set_size: int = 1, value: float | None = None) -> str:
    """What a count sweep's values count: ``bubbles``, ``bubble sets`` (sets of ``set_size`` kinds), ``bubble`` for
    a ``value`` of 1; '' on a size axis, whose values carry their MiB."""
    if axis != "count":
        return ""
    noun = "bubble set" if set_size > 1 else "bubble"
    return noun if value == 1 else noun + "s"


def pressure(value: float | None, axis: str, set_size: int = 1) -> str:
    """A sweep value with its unit, the one wording of pressure in sentences: ``1 bubble``, ``4 bubbles``,
    ``2 bubble sets``, ``512 MiB``; ``-`` when missing."""
    text, unit = format_value(value, axis), pressure_unit(axis, set_size, value)
    return f"{text} {unit}" if unit and text != "-" else text


def times(ratio: float | None) -> str:
    """A ratio for people: ``1.07x``, ``4.1x``, ``12x``."""
    if _missing(ratio):
        return "?x"
    assert ratio is not None
    if ratio < 2:
        return f"{ratio:.2f}x"
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"


def fmt_ms(value: Any) -> str:
    """Milliseconds with three significant digits (``12.3``, ``0.845``, ``1234``)."""
    if _missing(value):
        return "-"
    v = float(value)
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def ms(value: Any) -> str:
    """Milliseconds with the unit: ``12.3 ms``, or ``-``."""
    return "-" if _missing(value) else fmt_ms(value) + " ms"


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested metadata as (dotted.key, value) rows for a two-column table."""
    if isinstance(data, dict):
        rows: list[tuple[str, str]] = []
        for key, value in data.items():
            rows.extend(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(data, list | tuple) and any(isinstance(x, dict | list) for x in data):
        return [(prefix, json.dumps(data, default=str))]
    if isinstance(data, list | tuple):
        return [(prefix, ", ".join(str(x) for x in data))]
    return [(prefix, "" if data is None else str(data))]


def share_of_percent(text: str, where: str) -> float:
    """``10%`` (or ``10``) as 0.10, for thresholds given on a command line; one clear line otherwise."""
    from bubbleup.errors import UserError

    try:
        value = float(str(text).strip().removesuffix("%")) / 100
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a percentage such as 10%") from None
    if not 0 < value < 10:
        raise UserError(f"{where}: {text} must be above 0% and below 1000%")
    return value
