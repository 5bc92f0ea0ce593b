"""Run-time adaptation, as ApproxDet does it (Xu et al., SenSys 2020): a contention sensor and a scheduler.

Runs inside the worker, between frames, so it is pure and cheap: no I/O, no pandas. The profile it
reads is measured offline (a run directory of the same workload under a count sweep) and reduced,
before the run starts, to a table (:func:`bubbleup.analysis.tradeoff.profile_table`) that travels to
the worker with the load command and is kept in the manifest, so a run says exactly what it adapted to.

The sensor infers the contention level from the frames it has just seen: the median of the last
``window`` latencies at the current setting, matched (in log space, nearest) against each level's
profiled median of that setting. The scheduler then applies :func:`bubbleup.analysis.tradeoff`'s rule
at that level: the most accurate candidate whose profiled latency at the percentile is within
``slo / margin``, the fastest when none is. A frame that switched setting carries the switch's cost in
its own latency (the device pays it); it is not fed to the sensor, since it says nothing about contention.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

from bubbleup.store.records import ADAPTIVE

__all__ = ["ADAPTIVE", "Policy", "Profile", "Rule", "choose", "policy_from", "sense"]


@dataclass(frozen=True)
class Profile:
    """What the policy knows, per setting and pressure level (ascending): the latency the rule holds to the
    budget, the median the sensor matches, and the setting's accuracy."""

    levels: tuple[float, ...]
    latency_ms: dict[str, tuple[float, ...]]  # at the rule's percentile
    median_ms: dict[str, tuple[float, ...]]
    accuracy: dict[str, float]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        return cls(tuple(float(v) for v in d["levels"]),
                   {k: tuple(float(x) for x in v) for k, v in d["latency_ms"].items()},
                   {k: tuple(float(x) for x in v) for k, v in d["median_ms"].items()},
                   {k: float(v) for k, v in d["accuracy"].items()})  # fmt: skip

    @property
    def settings(self) -> list[str]:
        return list(self.latency_ms)


@dataclass(frozen=True)
class Rule:
    slo_ms: float
    margin: float = 1.3
    every: int = 4
    window: int = 8

    @property
    def budget_ms(self) -> float:
        return self.slo_ms / self.margin


def choose(profile: Profile, level: int, budget_ms: float) -> str:
    """The most accurate setting whose profiled latency at ``level`` is within ``budget_ms`` (ties: the
    faster); the fastest setting when none is."""
    lat = {s: v[level] for s, v in profile.latency_ms.items()}
    fits = [s for s, ms in lat.items() if ms <= budget_ms]
    if fits:
        return max(fits, key=lambda s: (profile.accuracy[s], -lat[s]))
    return min(lat, key=lambda s: lat[s])


def sense(profile: Profile, setting: str, observed_ms: float) -> int:
    """The level whose profiled median of ``setting`` is nearest ``observed_ms`` in log space; on a tie the
    higher level (a sensor that errs towards more contention misses the SLO less)."""
    medians = profile.median_ms[setting]
    x = math.log(max(observed_ms, 1e-9))
    dist = [abs(x - math.log(max(m, 1e-9))) for m in medians]
    best = min(dist)
    return max(i for i, d in enumerate(dist) if d <= best + 1e-12)


class Policy:
    """One workload's adaptation state: the current setting and level, the sensor's window of recent frames."""

    def __init__(self, profile: Profile, rule: Rule) -> None:
        self.profile = profile
        self.rule = rule
        self.level = 0  # the least contention until a window says otherwise
        self.setting = choose(profile, 0, rule.budget_ms)
        self._recent: deque[float] = deque(maxlen=rule.window)
        self._since = 0  # frames since the last decision

    def observe(self, latency_ms: float, switched: bool) -> str:
        """Feed the latency of the frame just run (``switched``: it paid a switch); return the setting for the
        next frame."""
        if not switched:
            self._recent.append(latency_ms)
        self._since += 1
        if self._since >= self.rule.every and len(self._recent) >= self.rule.window:
            self._since = 0
            self.level = sense(self.profile, self.setting, statistics.median(self._recent))
            wanted = choose(self.profile, self.level, self.rule.budget_ms)
            if wanted != self.setting:
                self.setting = wanted
                self._recent.clear()  # the window speaks of one setting's latencies only
        return self.setting

    @property
    def level_value(self) -> float:
        return self.profile.levels[self.level]


def policy_from(message: dict[str, Any]) -> Policy:
    """The policy the load command's ``adapt`` entry describes (:func:`bubbleup.analysis.tradeoff.profile_table`
    plus the scenario's rule)."""
    rule = Rule(float(message["slo_ms"]), float(message["margin"]), int(message["every"]), int(message["window"]))
    return Policy(Profile.from_dict(message["profile"]), rule)
