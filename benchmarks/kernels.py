"""Fixed reference kernels the benchmarks time, importable by a worker process.

Kernels write into preallocated buffers: a 200 KB temporary per call would go through
glibc's mmap threshold, whose state differs from process to process and moved one
process's timings by 25% against another's in our first measurements.
"""

from __future__ import annotations

import numpy as np

_A = np.random.default_rng(0).standard_normal((160, 160)) / 160
_B = np.empty_like(_A)
_C = np.empty_like(_A)


def matmul_1ms() -> None:
    """About a millisecond of single-threaded numpy work, allocation-free."""
    np.matmul(_A, _A, out=_B)
    for _ in range(3):
        np.matmul(_A, _B, out=_C)
        np.matmul(_A, _C, out=_B)
