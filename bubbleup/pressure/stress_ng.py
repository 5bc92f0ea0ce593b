"""A bubble made of stress-ng stressors, speaking the same protocol as ``bubble_kernel``.

``backend: stress-ng`` starts this shim instead of the built-in kernel, so the pool,
readiness gating and cleanup are one mechanism for both. The shim:

- refuses unsafe sizes exactly like the built-in bubble;
- starts ``stress-ng`` with a ``vm`` stressor holding the region (``--vm-bytes`` is the
  total across vm workers, so one worker; ``--vm-keep`` so it is never unmapped;
  ``--oomable``; ``--vm-hang 0`` to hold it without CPU when the CPU part is separate)
  and a ``cpu`` stressor at ``--cpu-load`` for the duty cycle;
- reports ready only once the vm worker's *anonymous* resident memory (RssAnon) has
  reached 97% of the request: measured, never assumed;
- ties stress-ng's life to its own (PR_SET_PDEATHSIG in the child; stress-ng's workers
  exit when their parent does), and stops it by PID.

stress-ng cannot duty-cycle a memory walk, so ``stream``/``random`` patterns need
``cpu_duty`` 1 (a vm method walking continuously); scenario validation says so.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psutil

from bubbleup.pressure.kernel import (
    RESIDENT_TOLERANCE,
    build_parser,
    emit,
    refusal,
    validate_args,
)
from bubbleup.procs import die_with_parent, exit_when_stdin_closes, process_tree, terminate, tied_to_this_process

MIB = 1 << 20
#: The vm method per pattern. ``random`` steps through memory in very large prime strides (``prime-1``), so every
#: access lands on another cache line and page, past the prefetchers, as the built-in bubble's scattered walk
#: does; ``rand-set`` (once used here) writes random *values* but walks the addresses in order.
VM_METHODS = {"stream": "write64", "random": "prime-1"}


def stress_ng_argv(size_mb: int, cpu_duty: float, pattern: str, period_ms: float = 50.0) -> list[str]:
    """The stress-ng command for one bubble; ValueError for what stress-ng cannot express.

    A partial duty's busy slice is ``cpu_duty x period_ms`` (``--cpu-load-slice``), so stress-ng cycles
    with the built-in bubble's period; left to itself it picks random busy slices of up to 0.5 s, and a
    workload step of a few hundred milliseconds then sees the bubble on or off, not its duty."""
    exe = shutil.which("stress-ng")
    if exe is None:
        raise ValueError("stress-ng is not installed (Debian/Ubuntu: apt-get install stress-ng)")
    walk = pattern in VM_METHODS and size_mb > 0
    if walk and cpu_duty not in (0.0, 1.0):
        raise ValueError(f"stress-ng cannot duty-cycle a {pattern} memory walk: use cpu_duty 1, or pattern none")
    argv = [exe, "--timeout", "0", "--quiet", "--oomable"]
    if size_mb > 0:
        argv += ["--vm", "1", "--vm-bytes", f"{size_mb}M", "--vm-keep", "--vm-populate"]
        if walk and cpu_duty == 1.0:
            argv += ["--vm-method", VM_METHODS[pattern]]
        else:
            argv += ["--vm-hang", "0"]
    if cpu_duty > 0 and not (walk and cpu_duty == 1.0):
        argv += ["--cpu", "1", "--cpu-load", str(round(cpu_duty * 100)), "--cpu-method", "int64"]
        if cpu_duty < 1.0:
            argv += ["--cpu-load-slice", str(max(1, round(cpu_duty * period_ms)))]
    if size_mb == 0 and cpu_duty == 0:
        argv += ["--pause", "1"]  # nothing to stress: one idle stressor keeps the bubble's shape
    return argv


def _anon_rss(proc: psutil.Process) -> int:
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("python -m bubbleup.pressure.stress_ng")
    args = parser.parse_args(argv)
    validate_args(parser, args)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    refused = refusal(args.size_mb, args.reserve_mb, args.allow_unsafe)
    if refused:
        emit("error", message=refused)
        return 3
    try:
        cmd = stress_ng_argv(args.size_mb, args.cpu_duty, args.pattern, args.period_ms)
    except ValueError as exc:
        emit("error", message=str(exc))
        return 3
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             preexec_fn=tied_to_this_process())  # fmt: skip
    assert child.stderr is not None  # piped just above
    if args.watch_stdin:
        exit_when_stdin_closes()  # after Popen: no thread may exist while preexec_fn runs
    root = psutil.Process(child.pid)
    try:
        region, previous, stable = 0, -1, 0
        deadline = time.perf_counter() + 120
        while not stop.is_set():
            if child.poll() is not None:
                tail = (child.stderr.read() or b"").decode(errors="replace").strip().splitlines()[-1:]
                emit("error", message=f"stress-ng exited with status {child.returncode}: {' '.join(tail)[:200]}")
                return 3
            # The vm worker's growth over what every stress-ng process holds from its fork (the parent's
            # anonymous memory, about 1 MiB): a small bubble is not ready on that alone.
            region = max(0, max((_anon_rss(p) for p in process_tree(root)), default=0) - _anon_rss(root))
            # Resident enough, and done growing (stress-ng populates progressively): then ready.
            stable = stable + 1 if region == previous else 0
            previous = region
            if region >= RESIDENT_TOLERANCE * args.size_mb * MIB and (stable >= 3 or region >= args.size_mb * MIB):
                break
            if time.perf_counter() > deadline:
                emit("error", message=f"stress-ng held only {region / MIB:.0f} of {args.size_mb} MiB after 120 s")
                return 3
            time.sleep(0.02)
        # The shim counts too: telemetry samples this process and its descendants, and a bubble's memory loss is
        # read as the fall from this figure to telemetry's lowest (validity's bubble_rss).
        tree_rss = sum(p.memory_info().rss for p in process_tree(psutil.Process()))
        emit("ready", size_mb=args.size_mb, cpu_duty=args.cpu_duty, region_mb=region / MIB, rss_mb=tree_rss / MIB,
             baseline_mb=(tree_rss - region) / MIB, touch_s=time.perf_counter() - t0, pattern=args.pattern,
             backend="stress-ng", argv=cmd[1:])  # fmt: skip
        wall0 = time.perf_counter()
        cpu0 = _tree_cpu(root)
        while not stop.wait(0.2):
            if child.poll() is not None:
                emit("error", message=f"stress-ng died while running: status {child.returncode}")
                return 3
        wall, cpu = time.perf_counter() - wall0, _tree_cpu(root) - cpu0
        stopped: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu, "core_share": cpu / wall if wall else 0.0}
    finally:
        terminate([child], grace_s=3.0)
    emit("stopped", **stopped)
    return 0


def _tree_cpu(root: psutil.Process) -> float:
    total = 0.0
    for p in process_tree(root):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


if __name__ == "__main__":
    sys.exit(main())
