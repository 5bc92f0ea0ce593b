"""How sure is a cliff verdict? The cliff's location as a distribution over resampled curves.

:func:`bubbleup.analysis.cliff.detect` gives each setting one verdict, and on a noisy machine it can
flip between runs ("cliff at 2", "no cliff"). This module says how often each answer comes out when
the same data is resampled, so a reader sees "cliff at 2 (94% of resamples)" or "no cliff (55%;
cliff at 2 in 45%)" instead of one word that hides the doubt.

Resample rule
-------------
A hierarchical bootstrap, ``B`` resamples (1000, seed 0: a report rebuilt from the same files says
the same thing). In each resample:

1. the run's repeats are drawn as units, with replacement, as many as there are; one draw serves
   every point of the curve, because a repeat is one pass over the sweep and its points drift
   together (condition 4 compares a repeat with itself from one point to the next);
2. within each drawn repeat, at each point, its timed samples are drawn with replacement, as many
   as it has. A run with one repeat resamples just the samples. A repeat that never reached a point
   (an interrupted run) adds nothing there; if none of the drawn repeats did, the point's pooled
   samples are drawn instead;
3. the resampled levels (IQMs) and per-repeat levels go through the detector's own numeric core
   (:func:`~bubbleup.analysis.cliff.step_codes`: effect, kink, persistence, degradation;
   :func:`~bubbleup.analysis.cliff.first_disagreeing`: consistency across repeats). The first step
   that qualifies is the resample's cliff; if none does, the first non-functional point is; if there
   is none, the verdict is *none* (no cliff in the measured range).

Non-functional points (failed, timed out) are not resampled: a workload that died stays dead, so a
non-functional cliff is found in every resample unless a break comes before it.

Why
---
Condition 3 of the detector (the jump's 95% CI clears the trend) is left out of the resamples: it
asks about sampling noise at one step, and the resample distribution *is* that noise, for the whole
verdict. Applying it inside every resample would count the uncertainty twice and push every marginal
step towards *none*; leaving it out lets *none* and each location compete on equal terms. Repeats
are units because the largest variation on these machines is between passes, not between samples
(README "Results you can trust": three back-to-back runs of the main job agreed on the cliff for only 3 of 12
settings): resampling samples alone would make one drifted repeat look certain. The per-step bootstrap
of ``detect`` (scipy, 2000 resamples per candidate step) is far too slow to run B times; here each
point costs one index matrix per drawn repeat and a level along an axis, for all B at once.
With B = 1000 a share's standard error is at most 1.6 percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bubbleup.analysis.cliff import (
    DEFAULT_RULE,
    LEVEL_FLOOR,
    NO_DATA,
    PASS,
    Cliff,
    CliffRule,
    CurvePoint,
    first_disagreeing,
    step_codes,
)
from bubbleup.analysis.summary import SettingCurve, setting_curves
from bubbleup.formatting import format_value, number
from bubbleup.store.reader import Run

N_RESAMPLES = 1000
SEED = 0
#: Alternatives a sentence names after the modal verdict; the rest are summed as "others".
SHOWN_ALTERNATIVES = 3

Location = float | None  # the ``at`` of a break or non-functional cliff; None: no cliff in the measured range


@dataclass(frozen=True)
class Verdicts:
    """One setting's verdicts over the resamples: the share of each location (None: no cliff)."""

    setting: str
    shares: dict[Location, float]  # most frequent first; the shares sum to 1
    modal: Location
    modal_share: float
    n_resamples: int  # 0: the setting has no measurements
    axis: str = "count"
    failure: float | None = None  # the first non-functional point, where a cliff means "stops working"
    set_size: int = 1  # bubbles per set of kinds: a count sweep's value then counts sets

    def share(self, location: Location) -> float:
        """The share of resamples whose verdict is ``location`` (0 when none is)."""
        return self.shares.get(location, 0.0)

    def sentence(self) -> str:
        """``HH: cliff at 1 bubble (94% of resamples; 2 in 6%).`` or ``LL: no cliff (71% of resamples; ...).``"""
        if self.n_resamples == 0:
            return f"{self.setting}: no measurements."
        others = self.alternatives(exclude=(self.modal,))
        return f"{self.setting}: {self.where(self.modal)} ({percent(self.modal_share)} of resamples{others})."

    def where(self, location: Location, short: bool = False) -> str:
        """A location in words: ``cliff at 2 bubbles``, ``stops working at 5 bubbles``, ``no cliff``; ``short``
        leaves out the unit."""
        if location is None:
            return "no cliff"
        at = format_value(location, self.axis) if short else self._at(location)
        return f"stops working at {at}" if location == self.failure else f"cliff at {at}"

    def alternatives(self, exclude: Sequence[Location] = ()) -> str:
        """``; 2 in 6%, no cliff in 1%``: the other verdicts after the modal one, most frequent first."""
        rest = [(loc, s) for loc, s in self.shares.items() if loc not in exclude]
        if not rest:
            return ""
        bare = self.modal is not None and self.modal != self.failure  # "cliff at 1 ...; 2 in 6%" reads on its own
        words = []
        for loc, s in rest[:SHOWN_ALTERNATIVES]:
            plain = bare and loc is not None and loc != self.failure
            words.append(f"{format_value(loc, self.axis) if plain else self.where(loc, short=True)} in {percent(s)}")
        if len(rest) > SHOWN_ALTERNATIVES:
            words.append(f"others in {percent(sum(s for _, s in rest[SHOWN_ALTERNATIVES:]))}")
        return "; " + ", ".join(words)

    def _at(self, value: float) -> str:
        if self.axis == "size_mb":
            return format_value(value, self.axis)
        v = number(value)
        noun = "bubble set" if self.set_size > 1 else "bubble"
        return f"{v} {noun}{'' if v == '1' else 's'}"


def percent(share: float) -> str:
    """A share for people: ``94%``; never ``100%`` or ``0%`` unless it is exactly that."""
    if share >= 1:
        return "100%"
    if share <= 0:
        return "0%"
    p = round(share * 100)
    return ">99%" if p >= 100 else "<1%" if p < 1 else f"{p}%"


def agrees(cliff: Cliff, verdicts: Verdicts) -> bool:
    """True when the detector's verdict is the most frequent resampled one."""
    return verdicts.n_resamples > 0 and cliff.location == verdicts.modal


def beside(cliff: Cliff, verdicts: Verdicts) -> str:
    """What the report prints next to the detector's verdict: the modal resample verdict and its share, or,
    when the two disagree, both (``Detector: cliff at 2 bubbles; resamples: no cliff in 55%, 2 in 45%...``)."""
    if verdicts.n_resamples == 0 or cliff.kind == NO_DATA:
        return ""
    v = verdicts
    if agrees(cliff, v):
        return f"Resamples: {v.where(v.modal)} in {percent(v.modal_share)}{v.alternatives(exclude=(v.modal,))}."
    det = cliff.location
    return (
        f"Detector: {v.where(det)}; resamples: {v.where(v.modal)} in {percent(v.modal_share)}"
        f"{v.alternatives(exclude=(v.modal,))}. They disagree: read this verdict as uncertain."
    )


def resample_locations(
    curve: Sequence[CurvePoint], rule: CliffRule = DEFAULT_RULE, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """Each resample's verdict (see the module docstring): the cliff's location, NaN for no cliff."""
    points = sorted((p for p in curve if not p.functional or len(p.samples) > 0), key=lambda p: p.value)
    bad = next((i for i, p in enumerate(points) if not p.functional), None)
    good = points if bad is None else points[:bad]
    out = np.full(n_resamples, points[bad].value if bad is not None else math.nan)
    if len(good) < 2:
        return out
    rng = np.random.default_rng(seed)
    levels, by_repeat = _resampled_levels(good, n_resamples, rng)
    codes, expected = step_codes(np.array([p.value for p in good]), np.maximum(levels, LEVEL_FLOOR), rule)
    ok = codes == PASS
    enough = np.array([len(p.samples) >= 2 for p in good])  # detect cannot judge a step from one sample either
    ok[:, 1:] &= enough[1:] & enough[:-1]
    for k in range(1, len(good)):
        rows = np.flatnonzero(ok[:, k])
        if len(rows):
            ok[rows, k] = first_disagreeing(by_repeat[rows, k - 1], by_repeat[rows, k], expected[rows, k]) < 0
    found = ok.any(axis=1)
    out[found] = np.array([p.value for p in good])[ok.argmax(axis=1)[found]]
    return out


def _resampled_levels(
    good: Sequence[CurvePoint], n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled levels (B, points) and per-drawn-repeat levels (B, points, repeats; NaN where the drawn
    repeat has no samples at the point) of ``n_resamples`` hierarchical resamples of the working points.

    A draw is a rank into the point's sorted samples: ranks are small integers, which sort many times
    faster than B copies of the latencies, and sorted ranks index sorted latencies, so the middle half
    of a row of ranks picks the middle half of its latencies.
    """
    units = [dict(p.by_repeat) if p.by_repeat else {0: p.samples} for p in good]
    ids = sorted(set().union(*units))
    n_rep = len(ids)
    draws = np.sort(rng.integers(0, n_rep, size=(n_resamples, n_rep)), axis=1)  # order is irrelevant: sort and
    combos, inverse = np.unique(draws, axis=0, return_inverse=True)  # group, so each group pools a fixed size
    groups = [np.flatnonzero(inverse.ravel() == g) for g in range(len(combos))]
    levels = np.empty((n_resamples, len(good)))
    by_repeat = np.full((n_resamples, len(good), n_rep), math.nan)
    for i, unit in enumerate(units):
        parts = [np.asarray(unit.get(r, ()), dtype=float) for r in ids]
        pooled = np.concatenate(parts)
        order = np.argsort(pooled, kind="stable")
        ascending = pooled[order]  # the point's samples; each repeat's as ascending ranks into them
        rank = np.empty(len(pooled), dtype=np.int32)
        rank[order] = np.arange(len(pooled), dtype=np.int32)
        starts = np.cumsum([0] + [len(x) for x in parts])
        ranks = [np.sort(rank[starts[r] : starts[r + 1]]) for r in range(n_rep)]
        for combo, rows in zip(combos, groups, strict=True):
            sizes = [len(ranks[r]) for r in combo]
            if not any(sizes):  # none of the drawn repeats reached this point: draw from those that did
                levels[rows, i] = middle(ascending, sorted_draws(len(pooled), len(rows), rng))
                continue
            drawn = np.empty((len(rows), sum(sizes)), dtype=np.int32)  # the pooled resample, as ranks
            at = 0
            for j, r in enumerate(combo):
                if sizes[j]:
                    local = sorted_draws(sizes[j], len(rows), rng)
                    by_repeat[rows, i, j] = middle(ascending[ranks[r]], local)
                    drawn[:, at : at + sizes[j]] = ranks[r][local]  # still ascending: ranks[r] is
                    at += sizes[j]
            if len(combo) > 1:
                drawn.sort(axis=1)
            levels[rows, i] = middle(ascending, drawn)
    return levels, by_repeat


def sorted_draws(n: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` resamples of ``range(n)`` with replacement, ``n`` each, every row ascending (int32)."""
    small = n <= np.iinfo(np.int16).max  # int16 draws are cheaper; int32 sorts fastest
    drawn = rng.integers(0, n, size=(rows, n), dtype=np.int16 if small else np.int32).astype(np.int32, copy=False)
    drawn.sort(axis=1)
    return drawn


def middle(ascending: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per row, the level (IQM) of ``ascending[positions]`` for ascending rows of positions (as
    :func:`bubbleup.analysis.stats.iqm`: the mean of ranks m//4 .. m-m//4-1)."""
    m = positions.shape[1]
    cut = m // 4
    return np.asarray(ascending[positions[:, cut : m - cut]].mean(axis=1))


def curve_verdicts(
    setting: str,
    axis: str,
    curve: Sequence[CurvePoint],
    *,
    rule: CliffRule = DEFAULT_RULE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    set_size: int = 1,
) -> Verdicts:
    """One setting's :class:`Verdicts` from its curve. Ties between shares go to the lower pressure, and
    *none* counts as beyond the highest."""
    if not any(not p.functional or len(p.samples) > 0 for p in curve):
        return Verdicts(setting, {}, None, 0.0, 0, axis=axis, set_size=set_size)
    failure = min((p.value for p in curve if not p.functional), default=None)
    locs = resample_locations(curve, rule, n_resamples, seed)
    counts = pd.Series(locs).value_counts(dropna=False)
    shares: dict[Location, float] = {
        (None if math.isnan(float(loc)) else float(loc)): float(n) / n_resamples for loc, n in counts.items()
    }
    order = sorted(shares, key=lambda loc: (-shares[loc], math.inf if loc is None else loc))
    shares = {loc: shares[loc] for loc in order}
    modal = order[0]
    return Verdicts(setting, shares, modal, shares[modal], n_resamples, axis, failure, set_size)


def verdicts(
    run: Run,
    summary: pd.DataFrame | None = None,
    *,
    rule: CliffRule = DEFAULT_RULE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> list[Verdicts]:
    """Every setting's resampled verdicts, in settings order, from the same curves as
    :func:`~bubbleup.analysis.summary.find_cliffs`. Each setting starts from ``seed``, so its answer does
    not depend on which other settings the run measured."""
    return verdicts_of(setting_curves(run, summary), rule=rule, n_resamples=n_resamples, seed=seed)


def verdicts_of(
    curves: Sequence[SettingCurve], *, rule: CliffRule = DEFAULT_RULE, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> list[Verdicts]:
    """:func:`verdicts` of curves already built (the report builds them once for the cliffs and these)."""
    return [
        curve_verdicts(c.setting, c.axis, c.points, rule=rule, n_resamples=n_resamples, seed=seed, set_size=c.set_size)
        for c in curves
    ]
