"""The bubble pool: start N bubble processes, wait until every one is resident and running, stop them.

Readiness is a message from each bubble after it has *measured* its own RSS,
never a timer: first-touch speed of fresh memory varies 16x on our hosts.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bubbleup import procs
from bubbleup.errors import BubbleFailed
from bubbleup.pressure.kinds import BASELINE_MB, effective, safe_mb

MIB = 1 << 20

if TYPE_CHECKING:
    from bubbleup.scenario import BubbleSpec


#: The process each backend runs; both speak bubble_kernel's JSON-lines protocol.
BACKEND_MODULES = {"builtin": "bubbleup.pressure.kernel", "stress-ng": "bubbleup.pressure.stress_ng"}
#: The shim a ``kind: command`` bubble (a co-runner) runs, behind the same protocol.
CORUNNER_MODULE = "bubbleup.pressure.corunner"


@dataclass
class BubbleHandle:
    index: int
    proc: subprocess.Popen[bytes]
    reader: procs.LineReader
    size_mb: int
    spec: BubbleSpec | None = None  # the effective spec it was started from (kind, duty, rate, backend)
    ready: dict[str, Any] | None = None
    ready_epoch: float = math.nan  # time.time() when its ready message was read
    stopped: dict[str, Any] | None = None
    started_epoch: float = math.nan  # time.time() as it was spawned
    stop_epoch: float = math.nan  # time.time() as its stop began (NaN: still live)
    gone_epoch: float = math.nan  # time.time() once it had exited
    limit_mb: float | None = None  # a co-runner's: the memory its guard lets it grow to

    def headroom_mb(self) -> float:
        """What this co-runner may still grow by: its guard's limit less what the program holds now (the
        shim's descendants, as the guard counts them)."""
        if self.limit_mb is None or not self.live or self.proc.poll() is not None:
            return 0.0
        import psutil

        from bubbleup.pressure.corunner import tree_usage

        try:
            held, _ = tree_usage(psutil.Process(self.pid).children(recursive=True))
        except psutil.Error:
            return 0.0
        return max(0.0, self.limit_mb - held)

    @property
    def live(self) -> bool:
        return math.isnan(self.stop_epoch)

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class BubblePool:
    """The bubbles of one point, possibly of several kinds. Use as a context manager so they always stop."""

    members: list[tuple[BubbleSpec, int]]  # (spec, size_mb) per bubble
    reserve_mb: int = 2048
    allow_unsafe: bool = False
    #: Rewrites each bubble's command line, e.g. ``Budget.wrap`` to start it inside a cgroup.
    wrap: Callable[[list[str]], list[str]] | None = None
    #: CPUs bubble *i* is pinned to (``CpuAssignment.for_bubble``); None: not pinned.
    cpus: Callable[[int], tuple[int, ...] | None] | None = None
    #: ``limits.max_memory_fraction``: with ``reserve_mb``, what the bubbles started together may hold.
    max_memory_fraction: float = 1.0
    bubbles: list[BubbleHandle] = field(default_factory=list)
    ready_s: float = 0.0

    @classmethod
    def uniform(cls, spec: BubbleSpec, count: int, size_mb: int, reserve_mb: int = 2048, allow_unsafe: bool = False,
                wrap: Callable[[list[str]], list[str]] | None = None) -> BubblePool:  # fmt: skip
        """``count`` identical bubbles of ``size_mb``."""
        return cls([(spec, size_mb)] * count, reserve_mb=reserve_mb, allow_unsafe=allow_unsafe, wrap=wrap)

    def start(self) -> None:
        self.grow(len(self.members))

    @property
    def live(self) -> list[BubbleHandle]:
        """The bubbles started and not stopped; ``bubbles`` also keeps those a schedule stopped."""
        return [b for b in self.bubbles if b.live]

    def grow(self, count: int) -> None:
        """Start members until ``count`` are live (a schedule's phase that adds bubbles); bubble *i* of the
        live ones is members[i], on bubble *i*'s CPUs, as at a count sweep's point of ``count``."""
        if count > len(self.members):
            raise ValueError(f"the pool holds {len(self.members)} members, not {count}")
        corunner_mb = self._memory_check(self.members[len(self.live):count])
        while len(self.live) < count:
            i = len(self.live)
            spec, size_mb = self.members[i]
            spec = effective(spec)
            if spec.kind == "command":
                module, args = CORUNNER_MODULE, self._corunner_args(spec, corunner_mb)
            else:
                module, args = BACKEND_MODULES[spec.backend], self._kernel_args(spec, size_mb, i)
            own_session = spec.placement == "own-session"
            cpus = self.cpus(i) if self.cpus is not None else None
            started = time.time()
            try:
                proc = procs.spawn_child(module, args, own_session=own_session, wrap=self.wrap, cpus=cpus)
            except OSError as exc:  # fork refused (ENOMEM, EAGAIN), CPUs not ours: the point fails, not the run
                raise BubbleFailed(f"bubble {i} could not be started: {exc}") from None
            assert proc.stdout is not None  # spawn_child always pipes stdout
            handle = BubbleHandle(i, proc, procs.LineReader(proc.stdout.fileno()), size_mb, spec, started_epoch=started,
                                  limit_mb=corunner_mb if spec.kind == "command" else None)  # fmt: skip
            self.bubbles.append(handle)

    def shrink(self, count: int) -> None:
        """Stop the live bubbles past the first ``count`` (a schedule's phase that removes bubbles), newest
        first; they stay in ``bubbles`` with what they said they delivered."""
        leaving = self.live[count:]
        if not leaving:
            return
        now = time.time()
        for b in leaving:
            b.stop_epoch = now
        self._stop(leaving)

    def resize(self, count: int) -> None:
        self.shrink(count)
        self.grow(count)

    def pressure_at(self, t_epoch: float) -> tuple[int, bool]:
        """(bubbles ready and not yet stopping at ``t_epoch``, whether any was joining or leaving then): the
        pressure in force at that moment, from this pool's own log."""
        live = sum(1 for b in self.bubbles if b.ready_epoch <= t_epoch and not b.stop_epoch <= t_epoch)
        joining = any(b.started_epoch <= t_epoch and not b.ready_epoch <= t_epoch and not b.stop_epoch <= t_epoch
                      for b in self.bubbles)  # fmt: skip
        leaving = any(b.stop_epoch <= t_epoch < b.gone_epoch for b in self.bubbles)
        return live, joining or leaving

    def _kernel_args(self, spec: BubbleSpec, size_mb: int, i: int) -> list[str]:
        """The command line of bubble ``i`` for both backends' kernels (one parser: kernel.build_parser)."""
        assert spec.pattern is not None  # effective() fills the pattern of every kind
        args = [
            "--size-mb", str(size_mb),
            "--cpu-duty", str(spec.cpu_duty),
            "--pattern", spec.pattern,
            "--period-ms", str(spec.period_ms),
            "--reserve-mb", str(self.reserve_mb),
            "--seed", str(i),
            "--watch-stdin",
        ]  # fmt: skip
        if spec.rate_mb_s is not None:
            args += ["--rate-mb-s", str(spec.rate_mb_s)]
        if self.allow_unsafe:
            args.append("--allow-unsafe")
        return args

    def _memory_check(self, starting: list[tuple[BubbleSpec, int]]) -> float | None:
        """Refuse to start bubbles that together would hold more than may be used now: the lesser of
        ``max_memory_fraction`` of the memory available and available less the reserve. Each bubble checks its
        own size too, but they allocate at the same moment, each seeing the same free memory. The scenario's check
        at start cannot see memory others took since. Co-runners already live (a schedule's earlier phase) keep
        the room their guard lets them grow into, so it counts as taken. Returns each starting co-runner's share
        of what is left (their memory is the program's, known only as it runs), or None when none starts or the
        scenario opted out."""
        if self.allow_unsafe or not starting:
            return None
        import psutil

        available = psutil.virtual_memory().available / MIB
        allowed = safe_mb(available, self.max_memory_fraction, self.reserve_mb)
        corunners = sum(1 for spec, _ in starting if spec.kind == "command")
        need: float = sum(size for spec, size in starting if spec.kind != "command") + BASELINE_MB * len(starting)
        held_open = sum(b.headroom_mb() for b in self.live)
        need += held_open
        if need > allowed:
            beside = f" beside {held_open:.0f} MiB live co-runners may still grow into" if held_open else ""
            raise BubbleFailed(f"refusing to start {len(starting)} bubble(s) holding about {need - held_open:.0f} MiB"
                               f"{beside}: only "
                               f"{allowed:.0f} MiB may be used now (the lesser of {self.max_memory_fraction:.0%} of "
                               f"the {available:.0f} MiB available and available less the {self.reserve_mb} MiB "
                               f"reserve; opt in with limits.allow_unsafe_memory)")  # fmt: skip
        return (allowed - need) / corunners if corunners else None

    def _corunner_args(self, spec: BubbleSpec, limit_mb: float | None) -> list[str]:
        args = ["--command", json.dumps(spec.command), "--startup-s", str(spec.startup_s),
                "--reserve-mb", str(self.reserve_mb), "--watch-stdin"]  # fmt: skip
        if limit_mb is not None:
            args += ["--limit-mb", f"{limit_mb:.0f}"]
        return args + (["--allow-unsafe"] if self.allow_unsafe else [])

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every bubble reported ready; BubbleFailed naming the first that cannot."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        while True:
            pending = [b for b in self.live if b.ready is None]
            if not pending:
                self.ready_s = time.monotonic() - t0
                return
            for b in pending:
                self._drain(b)
                if b.ready is None and (b.reader.closed or b.proc.poll() is not None):
                    self._drain(b)
                    if b.ready is None:
                        raise BubbleFailed(self._death_note(b, "before ready"))
            if time.monotonic() > deadline:
                b = next(b for b in self.live if b.ready is None)
                raise BubbleFailed(f"bubble {b.index} (pid {b.pid}, {b.size_mb} MiB) not ready after {timeout_s:.0f} s")
            open_fds = [b.reader.fd for b in self.live if b.ready is None and not b.reader.closed]
            procs.wait_readable(open_fds, min(0.1, max(deadline - time.monotonic(), 0)))

    def _drain(self, b: BubbleHandle) -> None:
        for msg in b.reader.read_available():
            if msg.get("event") == "ready":
                b.ready = msg
                b.ready_epoch = time.time()
            elif msg.get("event") == "stopped":
                b.stopped = msg
            elif msg.get("event") == "error":
                b.ready = None
                b.proc.poll()
                raise BubbleFailed(f"bubble {b.index} (pid {b.pid}): {msg.get('message')}")

    def _death_note(self, b: BubbleHandle, when: str) -> str:
        """How bubble ``b`` ended, ``when`` ("before ready", "while running"), with its last words on stderr."""
        b.proc.wait(timeout=5)
        tail = procs.stderr_tail(b.proc)
        return (
            f"bubble {b.index} (pid {b.pid}, {b.size_mb} MiB) died {when}: "
            f"{procs.describe_exit(b.proc.returncode)}" + (f": {tail}" if tail else "")
        )

    def check_alive(self) -> None:
        """Raise BubbleFailed if a bubble died after it was ready (e.g. OOM-killed)."""
        for b in self.live:
            if b.proc.poll() is not None:
                self._drain(b)  # its last words (a memory guard's refusal, stress-ng's failure) say why
                raise BubbleFailed(self._death_note(b, "while running"))

    @property
    def resident_mb(self) -> float:
        """Sum of the regions the live bubbles measured resident when they became ready."""
        return sum(b.ready["region_mb"] for b in self.live if b.ready)

    def pids(self) -> list[int]:
        return [b.pid for b in self.live]

    def stop(self) -> list[dict[str, Any]]:
        """Stop every bubble (SIGTERM, then SIGKILL) and return what each said it delivered, one entry per
        bubble ever started (``bubbles``' order)."""
        live = self.live
        now = time.time()
        for b in live:
            b.stop_epoch = now
        self._stop(live)
        return [b.stopped or {} for b in self.bubbles]

    def _stop(self, handles: list[BubbleHandle]) -> None:
        children = [b.proc for b in handles]
        procs.terminate(children)
        gone = time.time()
        for b in handles:
            b.gone_epoch = gone
            for msg in b.reader.read_available():
                if msg.get("event") == "stopped":
                    b.stopped = msg
        procs.close_pipes(children)

    def __enter__(self) -> BubblePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
