"""A synthetic numpy workload: fast, deterministic, sensitive to CPU and cache contention.

Each inference does ``rounds`` passes of a matrix-vector product (or, with ``columns`` > 1, a
matrix-matrix product) over a working set of ``working_set_kb``, so settings differ in both compute
and memory footprint, the way ApproxNet's settings do. It needs no TensorFlow, so tests run in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from workloads.base import Workload

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class SyntheticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: Working-set size per setting, in KiB (each becomes a setting named "ws<N>k").
    working_sets_kb: tuple[Annotated[int, Field(ge=1, le=64 << 20)], ...] = Field(default=(256, 2048, 16384),
                                                                                  min_length=1)  # fmt: skip
    #: Matrix-vector passes per inference; scales the compute per inference.
    rounds: int = Field(default=8, ge=1, le=10_000)
    #: Distinct input vectors cycled through (prepared before timing).
    n_samples: int = Field(default=8, ge=1, le=1024)
    #: Threads sharing each inference: the rounds run on each of them at once, so an inference ends when
    #: the slowest thread does, like a framework's intra-op pool. 1: the calling thread only.
    threads: int = Field(default=1, ge=1, le=64)
    #: Vectors multiplied per pass. With 1 (a matrix-vector product, ~15 us for 1 MiB) the threads spend
    #: much of their time holding the GIL between products, and two of them ran *faster* on one CPU than
    #: on two (2.5 vs 2.9 ms on our VM); with 32 or more each product releases the GIL for long enough
    #: that two threads on two CPUs took half the time of two on one, a truly parallel kernel. Each input
    #: is then ``columns`` vectors: memory beyond the working set of n_samples x columns x side x 8 bytes.
    columns: int = Field(default=1, ge=1, le=1024)
    #: Known answers, for checking accuracy end to end: each sample is "right" with this probability (drawn
    #: once per sample from ``seed``), and every inference says so (``{"correct": ...}``); a list gives each
    #: setting (working set, in order) its own share, as settings of a real network differ. None: no answers.
    correct_share: Share | tuple[Share, ...] | None = None

    @model_validator(mode="after")
    def _one_share_per_setting(self) -> SyntheticOptions:
        twice = sorted({kb for kb in self.working_sets_kb if self.working_sets_kb.count(kb) > 1})
        if twice:
            raise ValueError(f"working_sets_kb: {twice[0]} is given twice; each working set is a setting of its own")
        share = self.correct_share
        if isinstance(share, tuple) and len(share) != len(self.working_sets_kb):
            raise ValueError(f"correct_share: {len(share)} shares for {len(self.working_sets_kb)} working sets")
        return self
    seed: int = Field(default=0, ge=0)  # numpy seeds are non-negative


class SyntheticWorkload(Workload):
    kind = "synthetic"
    summary = "numpy matrix-vector (or matrix-matrix) passes over a tunable working set (no TensorFlow)"
    Options = SyntheticOptions

    def __init__(self, options: SyntheticOptions) -> None:
        super().__init__(options)
        self.options: SyntheticOptions = options
        self._matrices: dict[str, np.ndarray] = {}
        self._current: np.ndarray | None = None
        self._samples: list[np.ndarray] = []
        self._pool: ThreadPoolExecutor | None = None
        self._right: dict[int, bool] = {}  # id(sample) -> whether the workload answers it correctly

    def settings(self) -> list[str]:
        return [f"ws{kb}k" for kb in self.options.working_sets_kb]

    def presets(self) -> dict[str, str]:
        """The smallest and largest working set, in whatever order they were given."""
        sized = sorted(zip(self.options.working_sets_kb, self.settings(), strict=True))
        return {"small": sized[0][1], "large": sized[-1][1]}

    def load(self) -> None:
        if self.options.threads > 1:
            self._pool = ThreadPoolExecutor(self.options.threads, thread_name_prefix="synthetic")
        rng = np.random.default_rng(self.options.seed)
        for kb, name in zip(self.options.working_sets_kb, self.settings(), strict=True):
            side = max(8, int((kb * 1024 / 8) ** 0.5))
            self._matrices[name] = rng.standard_normal((side, side))

    def select(self, setting: str) -> None:
        self._current = self._matrices[setting]
        side = int(self._current.shape[1])
        rng = np.random.default_rng(self.options.seed + side)
        shape = (side,) if self.options.columns == 1 else (side, self.options.columns)
        self._samples = [rng.standard_normal(shape) for _ in range(self.options.n_samples)]
        share = self.options.correct_share
        if isinstance(share, tuple):
            share = share[self.settings().index(setting)]
        if share is not None:
            right = np.random.default_rng(self.options.seed + 1).random(len(self._samples)) < share
            self._right = {id(s): bool(r) for s, r in zip(self._samples, right, strict=True)}

    def samples(self) -> Sequence[Any]:
        return self._samples

    def infer(self, sample: np.ndarray) -> Mapping[str, Any] | None:
        if self._pool is None:
            self._passes(sample)
        else:
            for f in [self._pool.submit(self._passes, sample) for _ in range(self.options.threads)]:
                f.result()
        return {"correct": self._right[id(sample)]} if self._right else None

    def _passes(self, sample: np.ndarray) -> None:
        m = self._current
        assert m is not None  # select() comes first
        v = sample
        for _ in range(self.options.rounds):
            v = m @ v
            v /= np.abs(v).max() + 1e-12

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def metadata(self) -> dict[str, Any]:
        return {"numpy": np.__version__}
