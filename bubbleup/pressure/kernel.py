"""The bubble itself: one process that holds resident memory and burns CPU until told to stop.

Run as ``python -m bubbleup.pressure.kernel`` by the pool, or in-process by
``python -m bubbleup bubble``. It imports only numpy and psutil, so a bubble
costs about 30 MiB of baseline on top of the region it was asked for.

What ``size_mb`` means: the bubble's own resident *region*, measured as the
growth of its RSS over the baseline it had before allocating. Both numbers
are reported on ready, so nothing is assumed.

Life cycle and protocol (JSON lines on stdout, one object per line):

1. Refuse (``{"event": "error"}``, exit 3) if the region would eat into the
   safety reserve of available memory, unless ``--allow-unsafe``. Started by a
   person (``bubbleup bubble``, no parent to answer), the refusal is also one line
   on stderr and exit 2, as other bad input is.
2. Allocate, touch every page, check RSS grew by at least 97% of the request.
3. ``{"event": "ready", ...}``: memory is resident and the loop is about to run.
4. Duty-cycle loop: in every period, work until this thread has used
   ``duty * period`` of CPU time (or the period has passed, if the CPU is
   contended), then sleep out the period. The work walks the region with the
   chosen pattern, so the memory stays hot and caches/bandwidth are pressured.
5. On SIGTERM/SIGINT: ``{"event": "stopped", ...}`` with what it delivered, exit 0.

A bubble never outlives its orchestrator: with ``--parent-pid`` it asks the
kernel for SIGKILL when the parent dies (PR_SET_PDEATHSIG), and with
``--watch-stdin`` it exits when the pipe from the parent closes.

Fault injection, for tests of the run's validity verdict only: ``--fault-release-after-s S``
(or ``BUBBLEUP_FAULT_RELEASE_AFTER_S=S`` in the environment, which is how a test reaches the
bubbles of a whole run) makes the bubble give its region back to the kernel (``madvise
MADV_DONTNEED``) S seconds after ready and stop walking it, while it keeps burning its duty:
a bubble that misses its size target, as one squeezed out of memory would. A scenario cannot ask
for it, and it is never hidden: the ready message says ``"fault"``, which bubbles.csv records.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

from bubbleup.errors import OneLineParser
from bubbleup.procs import die_with_parent, exit_when_stdin_closes

MIB = 1 << 20
PAGE = 4096
RESIDENT_TOLERANCE = 0.97
FAULT_RELEASE_ENV = "BUBBLEUP_FAULT_RELEASE_AFTER_S"
MADV_DONTNEED = 4


def refusal(size_mb: int, reserve_mb: int, allow_unsafe: bool) -> str | None:
    """Why allocating ``size_mb`` now would eat into the reserve of available memory, or None if it is safe."""
    limit = psutil.virtual_memory().available / MIB - reserve_mb
    if size_mb <= limit or allow_unsafe:
        return None
    return (
        f"refusing to allocate {size_mb} MiB: only {max(limit, 0):.0f} MiB available beyond the "
        f"{reserve_mb} MiB reserve (opt in with allow_unsafe_memory / --allow-unsafe)"
    )


class Region:
    """The resident memory block and the ways of walking it."""

    def __init__(self, size_mb: float, seed: int) -> None:
        self.nbytes = int(size_mb * MIB)
        self.buf = np.empty(self.nbytes, dtype=np.uint8)
        self.words = self.buf.view(np.int64) if self.nbytes >= 8 else np.zeros(1, dtype=np.int64)
        self._cursor = 0
        self._rng = np.random.default_rng(seed)
        self.bytes_walked = 0
        self.accesses = 0  # scattered accesses (random and mixed walks), for the access rate
        n = max(self.words.size, 1)
        stride = max(1, int(n * 0.6180339887)) | 1  # odd; coprime with n when n is a power of two
        while math.gcd(stride, n) != 1:
            stride += 2
        self._stride = stride
        self._walk = 0
        self._steps = np.arange(4096, dtype=np.int64)

    def touch(self) -> None:
        """Write one byte in every page so the kernel has to back it with real memory."""
        if self.nbytes:
            self.buf[::PAGE] = 0x5A
            self.buf[-1] = 0x5A

    def stream_chunk(self, words: int = 32 * 1024) -> None:
        """Sequential read-modify-write of 256 KiB, wrapping around the region."""
        end = min(self._cursor + words, self.words.size)
        view = self.words[self._cursor : end]
        np.add(view, 1, out=view)
        self.bytes_walked += view.nbytes
        self._cursor = 0 if end >= self.words.size else end

    def random_chunk(self, accesses: int = 4096) -> None:
        """4096 independent random read-modify-writes across the region (cache/TLB misses)."""
        idx = self._rng.integers(0, self.words.size, accesses)
        self.words[idx] += 1
        self.bytes_walked += accesses * 8
        self.accesses += accesses

    def mixed_chunk(self, accesses: int = 4096, words: int = 128 * 1024) -> None:
        """Bubble-Up's bubble: ``accesses`` independent scattered read-modify-writes plus a 1 MiB stream.

        The scattered part walks the region along a full-period multiplicative sequence (a Weyl walk
        with an odd stride near the golden ratio of the region: every word visited once per lap, no
        two consecutive accesses on one line, and no random generator in the loop, like the paper's
        LFSR), so its footprint is the whole region and it misses in every cache the region exceeds;
        the streaming part moves bytes at the rate the memory bus allows. Pressure then grows with
        the region: inside the L2 both parts hit, past the LLC both go to memory.
        """
        n = self.words.size
        start = self._walk
        idx = (start + self._stride * self._steps[:accesses]) % n
        self.words[idx] += 1
        self._walk = int((start + self._stride * accesses) % n)
        self.bytes_walked += accesses * 8
        self.accesses += accesses
        self.stream_chunk(words)

    def release(self) -> None:
        """Fault injection: hand every whole page of the region back to the kernel (RSS drops by the region)."""
        if not self.nbytes:
            return
        addr = self.buf.ctypes.data
        start = -(-addr // PAGE) * PAGE
        length = (addr + self.nbytes - start) // PAGE * PAGE
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        if length > 0 and libc.madvise(start, length, MADV_DONTNEED) != 0:
            raise OSError(ctypes.get_errno(), "madvise(MADV_DONTNEED) failed")


def compute_chunk() -> None:
    """Pure integer work with no memory traffic: about 50 microseconds."""
    x = 0
    for i in range(1500):
        x += i * i


class Bubble:
    """Allocates, verifies residency, then runs the duty-cycle loop until stopped."""

    def __init__(self, size_mb: int, cpu_duty: float, pattern: str, period_ms: float, seed: int = 0,
                 rate_mb_s: float | None = None, release_after_s: float | None = None) -> None:  # fmt: skip
        self.size_mb = size_mb
        self.release_after_s = release_after_s  # fault injection (module docstring); None in real runs
        self.cpu_duty = cpu_duty
        self.rate_mb_s = rate_mb_s
        self.period_s = period_ms / 1000.0
        self.seed = seed
        # With no memory there is nothing to walk: fall back to pure compute, and say so.
        self.pattern = pattern if size_mb > 0 else "none"
        self.stop_event = threading.Event()
        self.region: Region | None = None

    def allocate(self) -> dict[str, Any]:
        me = psutil.Process()
        # Exercise every code path once on a tiny region first, so lazily loaded modules and
        # allocator arenas land in the baseline instead of being counted as the region.
        # 64 KiB: below glibc's mmap threshold, so freeing it does not raise that threshold and move
        # a small region (1 MiB) onto heap pages already resident, which the RSS growth would miss.
        warm = Region(1 / 16, self.seed)
        warm.touch()
        warm.stream_chunk()
        warm.random_chunk()
        warm.mixed_chunk()
        compute_chunk()
        del warm
        baseline = me.memory_info().rss
        t0 = time.perf_counter()
        self.region = Region(self.size_mb, self.seed)
        self.region.touch()
        region_bytes = me.memory_info().rss - baseline
        deadline = time.perf_counter() + 5.0
        while region_bytes < RESIDENT_TOLERANCE * self.region.nbytes and time.perf_counter() < deadline:
            time.sleep(0.05)  # e.g. the host is still backing pages; never assume, measure
            self.region.touch()
            region_bytes = me.memory_info().rss - baseline
        touch_s = time.perf_counter() - t0
        if region_bytes < RESIDENT_TOLERANCE * self.region.nbytes:
            raise MemoryError(
                f"only {region_bytes / MIB:.1f} of {self.size_mb} MiB became resident within {touch_s:.1f} s"
            )
        return {
            "region_mb": region_bytes / MIB,
            "baseline_mb": baseline / MIB,
            "rss_mb": me.memory_info().rss / MIB,
            "touch_s": touch_s,
            "pattern": self.pattern,
        }

    def _work(self) -> Callable[[], None]:
        if self.pattern == "stream" and self.region is not None:
            return self.region.stream_chunk
        if self.pattern == "random" and self.region is not None:
            return self.region.random_chunk
        if self.pattern == "mixed" and self.region is not None:
            return self.region.mixed_chunk
        return compute_chunk

    def run(self) -> dict[str, Any]:
        """The duty-cycle loop. Returns what was delivered."""
        work = self._work()
        period = self.period_s
        busy_target = self.cpu_duty * period
        region = self.region
        # A rate target is a byte budget per period, with the shortfall or excess carried over
        # (feedback), so the average holds even when single periods over- or undershoot.
        byte_budget = self.rate_mb_s * MIB * period if self.rate_mb_s and region is not None else None
        debt = 0.0
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        release_at = wall0 + self.release_after_s if self.release_after_s is not None and region else math.inf
        while not self.stop_event.is_set():
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            if start_wall >= release_at and region is not None:
                region.release()  # the injected fault: memory gone, the loop goes on as pure compute
                work, byte_budget, release_at = compute_chunk, None, math.inf
            if byte_budget is not None and region is not None:  # a byte budget implies a region
                goal = region.bytes_walked + byte_budget + debt
                while region.bytes_walked < goal and time.perf_counter() - start_wall < period:
                    work()
                debt = max(-byte_budget, min(byte_budget, goal - region.bytes_walked))
            elif busy_target > 0:
                # CPU time, not wall time: on a contended core we still ask for our full share.
                while time.thread_time() - start_cpu < busy_target and time.perf_counter() - start_wall < period:
                    work()
            if self.cpu_duty < 1.0 or byte_budget is not None:
                self.stop_event.wait(max(0.0, start_wall + period - time.perf_counter()))
        wall = time.perf_counter() - wall0
        cpu = time.thread_time() - cpu0
        walked = self.region.bytes_walked if self.region else 0
        accesses = self.region.accesses if self.region else 0
        return {
            "accesses_per_s": accesses / wall if wall > 0 else 0.0,
            "wall_s": wall,
            "cpu_s": cpu,
            "core_share": cpu / wall if wall > 0 else 0.0,
            "mb_per_s": walked / MIB / wall if wall > 0 else 0.0,
        }


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n")
    sys.stdout.flush()


def build_parser(prog: str = "bubbleup bubble") -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog,
        description="Run one bubble: hold SIZE MiB resident and burn CPU at a duty cycle until stopped (Ctrl-C).",
    )
    p.add_argument("--size-mb", type=int, required=True, help="resident region in MiB (2**20 bytes)")
    p.add_argument("--cpu-duty", type=float, default=1.0, help="share of one core to burn, 0..1 (default 1)")
    p.add_argument("--pattern", choices=("none", "stream", "random", "mixed"), default="stream", help="memory walk")
    p.add_argument("--period-ms", type=float, default=50.0, help="duty-cycle period in ms (default 50)")
    p.add_argument("--rate-mb-s", type=float, default=None, help="hold a streaming rate in MiB/s instead of a duty")
    p.add_argument("--reserve-mb", type=int, default=2048, help="memory always left available (default 2048)")
    p.add_argument("--allow-unsafe", action="store_true", help="allocate even into the reserve")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--watch-stdin", action="store_true", help=argparse.SUPPRESS)
    env_fault = os.environ.get(FAULT_RELEASE_ENV)
    fault_help = f"fault injection (tests): free the region S s after ready (or ${FAULT_RELEASE_ENV})"
    p.add_argument("--fault-release-after-s", type=float, metavar="S", default=float(env_fault) if env_fault else None,
                   help=fault_help)  # fmt: skip
    return p


def validate_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("cpu_duty", "period_ms", "rate_mb_s", "fault_release_after_s"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            p.error(f"--{name.replace('_', '-')} must be a finite number, not {value}")
    if args.size_mb < 0:
        p.error("--size-mb must not be negative")
    if not 0.0 <= args.cpu_duty <= 1.0:
        p.error("--cpu-duty must be between 0 and 1")
    if args.period_ms < 1.0:
        p.error("--period-ms must be at least 1")
    if args.rate_mb_s is not None and (args.rate_mb_s <= 0 or args.size_mb == 0 or args.pattern != "stream"):
        p.error("--rate-mb-s needs a positive rate, a region (--size-mb) and --pattern stream")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    validate_args(parser, args)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    if args.watch_stdin:
        exit_when_stdin_closes()

    bubble = Bubble(args.size_mb, args.cpu_duty, args.pattern, args.period_ms, args.seed, args.rate_mb_s,
                    args.fault_release_after_s)  # fmt: skip

    def on_signal(signum: int, _frame: object) -> None:
        bubble.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    refused = refusal(args.size_mb, args.reserve_mb, args.allow_unsafe)
    if refused:
        emit("error", message=refused)  # the pool's protocol
        if args.parent_pid is None and not args.watch_stdin:  # a person's `bubbleup bubble`: bad input
            print(f"error: {parser.prog}: {refused}", file=sys.stderr)
            return 2
        return 3
    try:
        ready = bubble.allocate()
    except MemoryError as exc:
        emit("error", message=f"allocation failed: {exc}")
        return 3
    fault = {"fault": f"region released {args.fault_release_after_s:g} s after ready"} \
        if bubble.release_after_s is not None else {}
    emit("ready", size_mb=args.size_mb, cpu_duty=args.cpu_duty, **ready, **fault)
    delivered = bubble.run()
    emit("stopped", **delivered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
