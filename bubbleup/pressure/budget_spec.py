"""A device budget as plain, validated data (what a scenario says), and the device presets.

Pure: no cgroup is touched here, so reading a scenario never imports process or kill logic
(that is :mod:`bubbleup.pressure.budget`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

MIB = 1 << 20
#: The CFS period; 100 ms is the kernel default, so a quota reads like ``cpus`` cores per 100 ms.
CPU_PERIOD_US = 100_000
#: The kernel refuses quotas under 1 ms.
MIN_QUOTA_US = 1_000
#: Below this a Python child cannot even start; a budget this small is a typo.
MIN_MEMORY_MB = 16


@dataclass(frozen=True)
class BudgetSpec:
    """A budget as plain, validated data (what a scenario says), before any cgroup is touched.

    ``memory_mb`` is the memory the group may use (MiB, 2**20 bytes), page cache included; ``cpus`` is a
    CPU-time quota in cores (0.5 = half of one core per period, spread over any cores), capped at the host's
    cores when applied; ``swap`` allows the group to swap (if the host has swap) instead of going straight to
    the OOM killer.
    """

    memory_mb: int | None = None
    cpus: float | None = None
    swap: bool = False
    #: The preset this came from, kept for the record.
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.memory_mb is not None:
            if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int):
                raise ValueError(f"budget memory_mb must be a whole number of MiB, got {self.memory_mb!r}")
            if self.memory_mb < MIN_MEMORY_MB:
                raise ValueError(f"budget memory_mb must be at least {MIN_MEMORY_MB}, got {self.memory_mb}")
        if self.cpus is not None:
            if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)):
                raise ValueError(f"budget cpus must be a number of cores, got {self.cpus!r}")
            if not self.cpus * CPU_PERIOD_US >= MIN_QUOTA_US:  # also rejects NaN
                raise ValueError(f"budget cpus must be at least {MIN_QUOTA_US / CPU_PERIOD_US}, got {self.cpus}")
            if math.isinf(self.cpus):
                raise ValueError("budget cpus must be a finite number of cores, got inf")
        if not isinstance(self.swap, bool):
            raise ValueError(f"budget swap must be true or false, got {self.swap!r}")

    def scaled(self, memory_factor: float) -> BudgetSpec:
        """The same device with its memory scaled (e.g. 1/8 of a TX2 for a quick test); CPUs unchanged."""
        if self.memory_mb is None:
            return self
        return replace(self, memory_mb=max(MIN_MEMORY_MB, round(self.memory_mb * memory_factor)))

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "memory_mb": self.memory_mb, "cpus": self.cpus, "swap": self.swap}

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | BudgetSpec | None) -> BudgetSpec | None:
        """A scenario's ``budget:`` value: a preset name, or a mapping of ``preset`` / ``memory_mb`` / ``cpus`` /
        ``swap`` where explicit keys override the preset's (``{preset: jetson-tx2, memory_mb: 1024}`` is a TX2
        scaled down for a test). Unknown keys and presets raise ``ValueError`` naming what is allowed.
        """
        if value is None or isinstance(value, BudgetSpec):
            return value
        if isinstance(value, str):
            return preset(value)
        if not isinstance(value, Mapping):
            raise ValueError(f"budget must be a preset name or a mapping, got {type(value).__name__}")
        allowed = ("preset", "memory_mb", "cpus", "swap")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ValueError(f"unknown budget key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(allowed)}")
        base = preset(value["preset"]) if value.get("preset") is not None else cls()
        overrides = {k: value[k] for k in ("memory_mb", "cpus", "swap") if k in value}
        spec = replace(base, **overrides)
        if spec.memory_mb is None and spec.cpus is None:
            raise ValueError("a budget needs memory_mb, cpus or a preset")
        return spec


#: Devices a scenario can name. Memory is the board's whole RAM, which on Jetsons the GPU shares; the
#: device's own OS takes part of it (about 1 GiB under L4T with a desktop), so a budget of the full size is
#: the optimistic case. CPU counts are capped at the host's cores when applied.
PRESETS: dict[str, BudgetSpec] = {
    # NVIDIA Jetson TX2 module data sheet: 8 GB 128-bit LPDDR4 shared by CPU and GPU;
    # 2x Denver 2 + 4x Cortex-A57 = 6 cores. The device of the study this harness reproduces.
    "jetson-tx2": BudgetSpec(memory_mb=8192, cpus=6, preset="jetson-tx2"),
    # NVIDIA Jetson Nano module data sheet: 4 GB 64-bit LPDDR4 shared by CPU and GPU; 4x Cortex-A57.
    "jetson-nano": BudgetSpec(memory_mb=4096, cpus=4, preset="jetson-nano"),
    # Raspberry Pi 4 Model B product brief: BCM2711, 4x Cortex-A72; sold with 1, 2, 4 or 8 GB (4 GB here).
    "raspberry-pi-4": BudgetSpec(memory_mb=4096, cpus=4, preset="raspberry-pi-4"),
}


def preset(name: str) -> BudgetSpec:
    """The preset called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown budget preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
