"""Bubble-Up's reporter: a small kernel whose sensitivity to memory-subsystem pressure is known.

One inference gathers ``accesses`` words at scattered places in a working set of ``working_set_mb``
(the harness asks for half this machine's last-level cache, so alone it lives in the LLC and a
co-runner that takes the LLC or the memory bus shows up as misses), and streams ``stream_kb`` of it. It uses one
thread and no TensorFlow: about a millisecond per inference, so a score needs seconds, not minutes.

``bubbleup calibrate --reporter`` measures its sensitivity curve against the Bubble-Up bubble on this
machine (a size sweep through the ordinary orchestrator); ``bubbleup score`` runs it beside a
co-runner and reads the co-runner's bubble score off that curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from workloads.base import Workload

MIB = 1 << 20


class ReporterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: Working set in MiB; ``bubbleup calibrate --reporter`` asks for half this machine's last-level cache.
    working_set_mb: int = Field(default=16, ge=1, le=4096)
    #: Scattered reads per inference.
    accesses: int = Field(default=1 << 15, ge=1024, le=1 << 24)
    #: KiB streamed per inference (a rotating window of the working set).
    stream_kb: int = Field(default=1024, ge=0, le=1 << 20)
    seed: int = Field(default=0, ge=0)  # numpy seeds are non-negative


class ReporterWorkload(Workload):
    kind = "reporter"
    summary = "Bubble-Up's reporter: scattered reads + a stream over half the LLC (for bubble scores)"
    Options = ReporterOptions

    def __init__(self, options: ReporterOptions) -> None:
        super().__init__(options)
        self.options: ReporterOptions = options
        self._data = np.zeros(1, dtype=np.int64)
        self._index: list[np.ndarray] = []
        self._window = 0
        self._cursor = 0

    def settings(self) -> list[str]:
        return ["reporter"]

    def working_set_mb(self) -> int:
        return self.options.working_set_mb

    def load(self) -> None:
        words = self.working_set_mb() * MIB // 8
        rng = np.random.default_rng(self.options.seed)
        self._data = rng.integers(0, 1 << 30, size=words, dtype=np.int64)
        # A few precomputed scatter patterns, cycled: generating indices is not what we time.
        self._index = [rng.integers(0, words, size=self.options.accesses) for _ in range(8)]
        self._window = min(words, self.options.stream_kb * 1024 // 8)

    def select(self, setting: str) -> None:
        self._cursor = 0

    def samples(self) -> Sequence[Any]:
        return self._index

    def infer(self, sample: np.ndarray) -> Mapping[str, Any] | None:
        # Independent scattered reads (a gather: many misses in flight), then the stream window.
        int(self._data[sample].sum())
        if self._window:
            end = self._cursor + self._window
            if end > self._data.size:
                self._cursor, end = 0, self._window
            int(self._data[self._cursor : end].sum())
            self._cursor = end
        return None

    def metadata(self) -> dict[str, Any]:
        return {"numpy": np.__version__, "working_set_mb": self.working_set_mb(),
                "accesses": self.options.accesses, "stream_kb": self.options.stream_kb}  # fmt: skip
