"""A co-runner: any program of the user's, run as a bubble under the bubbles' safety rules.

Bubble-Up scores *real* co-runners (a web search, a batch job) by running them beside a reporter.
``kind: command`` bubbles start this shim, which speaks the bubble protocol (JSON lines: ready,
stopped, error), so the pool, placement, readiness, telemetry and cleanup are the ones every bubble
has. The shim:

- refuses a command that is not a program here, and one that exits at once (within
  ``--startup-s``) reports why, with the tail of its stderr;
- starts it in a session of its own, tied to the shim's life (PR_SET_PDEATHSIG: a SIGKILL of the shim
  takes the program with it), and is its subreaper (PR_SET_CHILD_SUBREAPER): whatever the program
  leaves behind (a shell's backgrounded child, a double-forked daemon) is re-parented to the shim,
  which stops every descendant when it stops, when the program is restarted, and when the
  orchestrator dies (its death is a SIGTERM to the shim, not a SIGKILL, so the shim can);
- is the **memory guard**: polls the tree's resident memory and kills the tree when it grows
  past the memory available at start less the reserve (``--reserve-mb``), unless
  ``--allow-unsafe``: a co-runner never eats the machine's safety margin;
- restarts the program when it finishes with status 0 (a compression of one file is over in
  seconds; its pressure must last the point), counting the restarts; any other exit is an error;
- reports what the program used while it ran: CPU (cores kept busy, all its processes) and
  resident memory (mean and peak over the tree), in ``stopped``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psutil

from bubbleup.pressure.kernel import emit
from bubbleup.procs import (
    become_subreaper,
    die_with_parent,
    exit_when_stdin_closes,
    stop_descendants,
    tied_to_this_process,
)
from bubbleup.programs import not_a_program

MIB = 1 << 20
POLL_S = 0.1


def tree_usage(procs: list[psutil.Process]) -> tuple[float, float | None]:
    """(resident MiB, CPU seconds) of the live tree: each process's own CPU plus that of the children it
    has reaped, so a helper process that came and went is counted once, in its parent (None: no tree)."""
    rss, cpu, alive = 0.0, 0.0, False
    for p in procs:
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                alive = True
        except psutil.Error:
            continue
    return rss / MIB, cpu if alive else None


class CoRunner:
    def __init__(self, argv: list[str], limit_mb: float | None) -> None:
        self.argv = argv
        self.limit_mb = limit_mb
        self.child: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.cpu_last = 0.0  # CPU seconds of the current run of the program, at the last poll
        self.cpu_done = 0.0  # CPU seconds of earlier (restarted) runs of the program
        self.rss_peak = 0.0
        self.rss_sum = 0.0
        self.rss_n = 0
        self.errors = b""  # the tail of the program's stderr

    def launch(self) -> subprocess.Popen[bytes]:
        self.child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True,
                                      preexec_fn=tied_to_this_process())  # fmt: skip
        assert self.child.stderr is not None  # piped just above
        # Read stderr all the time, keeping its last 4 KiB: a pipe nobody reads fills, and a chatty program
        # would block on its next write and stop pressing exactly when it should.
        self.reader = threading.Thread(target=self._drain, args=(self.child.stderr,), daemon=True)
        self.reader.start()
        return self.child

    def _drain(self, stream: Any) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            self.errors = (self.errors + chunk)[-4096:]

    def poll(self) -> tuple[float, float]:
        """Resident MiB now and CPU seconds so far; raises MemoryError past the guard's limit."""
        assert self.child is not None
        self.child.poll()  # reaps the leader once it exits (the run's end is judged by the caller)
        rss, cpu = tree_usage(psutil.Process().children(recursive=True))  # the subreaper's: leftovers count too
        self.cpu_last = max(self.cpu_last, cpu) if cpu is not None else self.cpu_last
        self.rss_peak = max(self.rss_peak, rss)
        self.rss_sum, self.rss_n = self.rss_sum + rss, self.rss_n + 1
        if self.limit_mb is not None and rss > self.limit_mb:
            raise MemoryError(f"the co-runner grew to {rss:.0f} MiB, past the {self.limit_mb:.0f} MiB it may use "
                              f"(available at start less the reserve, or its share beside the other bubbles); "
                              f"killed")  # fmt: skip
        return rss, self.cpu_done + self.cpu_last


    def stderr_tail(self) -> str:
        """``: <its last two lines of stderr>``, or that it wrote none: the end of an error message."""
        assert self.child is not None
        self.child.wait()  # it has exited: let the reader reach the end of what it wrote
        self.reader.join(timeout=2.0)
        lines = self.errors.decode(errors="replace").strip().splitlines()
        return f": {' '.join(lines[-2:])[:300]}" if lines else " (nothing on its stderr)"

    def relaunch(self) -> None:
        """The program finished cleanly: stop what it left behind, run it again, keeping the CPU it used."""
        stop_descendants()
        self.cpu_done += self.cpu_last
        self.cpu_last = 0.0
        self.errors = b""
        self.restarts += 1
        self.launch()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bubbleup.pressure.corunner",
                                description="Run a program as a bubble: ready, memory guard, stopped.")  # fmt: skip
    p.add_argument("--command", required=True, help="the program and its arguments, as a JSON list")
    p.add_argument("--startup-s", type=float, default=1.0, help="it must survive this long to be ready")
    p.add_argument("--reserve-mb", type=int, default=2048, help="memory always left available (default 2048)")
    p.add_argument("--limit-mb", type=float, default=None,
                   help="at most this much, when less than available less the reserve (the pool's share for it)")
    p.add_argument("--allow-unsafe", action="store_true", help="no memory guard")
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--watch-stdin", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    become_subreaper()
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid, signal.SIGTERM)  # the shim stops its program's tree, then exits
    command = json.loads(args.command)
    missing = not_a_program(command)
    if missing:
        emit("error", message=missing)
        return 3
    limit = None if args.allow_unsafe else psutil.virtual_memory().available / MIB - args.reserve_mb
    if limit is not None and args.limit_mb is not None:
        limit = min(limit, args.limit_mb)
    if limit is not None and limit <= 0:
        emit("error", message=f"refusing to start a co-runner: less than the {args.reserve_mb} MiB reserve is "
                              f"available (opt in with allow_unsafe_memory / --allow-unsafe)")  # fmt: skip
        return 3
    runner = CoRunner(command, limit)
    t0 = time.perf_counter()
    child = runner.launch()
    if args.watch_stdin:
        exit_when_stdin_closes(then=stop.set)  # after Popen: no thread may exist while preexec_fn runs
    stopped: dict[str, Any] = {}
    try:
        deadline = time.perf_counter() + args.startup_s
        while time.perf_counter() < deadline and not stop.is_set():
            if child.poll() is not None:
                emit("error", message=f"{command[0]} exited at once (status {child.returncode}, within "
                                      f"{args.startup_s:g} s){runner.stderr_tail()}")  # fmt: skip
                return 3
            runner.poll()
            stop.wait(POLL_S)
        rss, _ = runner.poll()
        emit("ready", size_mb=0, cpu_duty=0.0, region_mb=0.0, baseline_mb=rss, rss_mb=rss,
             touch_s=time.perf_counter() - t0, pattern="none", backend="command", argv=command,
             program_pid=child.pid)  # fmt: skip
        wall0 = time.perf_counter()
        _, cpu0 = runner.poll()
        runner.rss_sum, runner.rss_n, runner.rss_peak = 0.0, 0, rss
        while not stop.wait(POLL_S):
            if child.poll() is not None:
                if child.returncode != 0:
                    emit("error", message=f"{command[0]} died while running: status {child.returncode}"
                                          f"{runner.stderr_tail()}")  # fmt: skip
                    return 3
                runner.poll()
                runner.relaunch()
                child = runner.child  # type: ignore[assignment]  # relaunch sets it
            runner.poll()
        _, cpu = runner.poll()
        wall = time.perf_counter() - wall0
        stopped = {"wall_s": wall, "cpu_s": cpu - cpu0, "core_share": (cpu - cpu0) / wall if wall > 0 else 0.0,
                   "rss_mean_mb": runner.rss_sum / runner.rss_n if runner.rss_n else rss,
                   "rss_peak_mb": runner.rss_peak, "restarts": runner.restarts}  # fmt: skip
    except MemoryError as exc:
        emit("error", message=str(exc))
        return 3
    finally:
        stop_descendants()  # the program and all it left: within the pool's 3 s grace (1 s, then SIGKILL)
        if runner.child is not None:
            runner.child.poll()
    emit("stopped", **stopped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
