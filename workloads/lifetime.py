"""What a workload starts cannot outlive the worker, nor the orchestrator.

The harness ties its own children to their parents in ``bubbleup.procs``; workloads do not import the harness
(tests/test_layout.py), so the few ties a workload needs for the programs it starts are here.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Looked up once, here: a preexec_fn runs between fork and exec, where a lookup (dlopen) could deadlock.
try:
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def tied_to_this_process() -> Callable[[], None]:
    """A ``preexec_fn``: SIGKILL the program when this process dies, and exit unrun if it died before the tie took
    effect (the program's parent is then another process). It also unblocks SIGTERM, which
    :func:`own_process_tree` blocks in a worker and a program must not inherit blocked."""
    me = os.getpid()

    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != me:
            os._exit(0)

    return preexec


#: Held while a program is being started (fork to exec): the thread that stops the worker's tree takes it and never
#: gives it back, so no program starts between its last look at the tree and the worker's exit.
spawning = threading.Lock()


_owned = False


def owns_process_tree() -> bool:
    """Whether this process is a worker that owns its process tree (:func:`own_process_tree`)."""
    return _owned


def own_process_tree() -> bool:
    """For a worker process only (its whole process tree is then the workload's): become the subreaper of
    whatever the workload's programs leave running, and stop all of it when the orchestrator dies, even by
    SIGKILL: the worker then gets SIGTERM (not the harness's SIGKILL), which a thread of its own waits for, so
    the worker's main thread may be anywhere. Without it, a program's own children (a shell's backgrounded
    job) were left to init when the orchestrator was killed mid-step. Never in a process that runs a
    workload in-process (a test, a notebook): SIGTERM stays blocked in it, and its other children inherit
    that (an orchestrator started from it waited out every bubble's grace period).

    The SIGTERM part only where this is the process's only thread (a blocked signal reaches a thread that has
    not blocked it, and kills the process outright): returns whether it took effect; otherwise the worker is
    a subreaper and dies by SIGKILL as before.

    Whatever ends the worker's interpreter stops the tree too (``atexit``): when the orchestrator dies mid-step,
    stopping the tree kills the running program, the step fails, the worker's reply to the dead orchestrator
    raises, and the main thread ends the interpreter, whose daemon threads die with it. The stop thread was then
    cut off half-way, and a program's background child was left to init (2 of 24 times beside a busy CPU)."""
    global _owned
    if _prctl is None:
        return False
    _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if not _owned:
        atexit.register(stop_descendants)
    _owned = True
    if threading.active_count() > 1:
        return False
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started from now on inherit it

    def watch() -> None:
        signal.sigwait({signal.SIGTERM})
        try:
            spawning.acquire(timeout=5.0)  # the main thread may be starting the next program right now
            stop_descendants()
        finally:
            os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="stop-tree", daemon=True).start()
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the orchestrator died before the new tie took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def stop_descendants(wait_s: float = 2.0) -> None:
    """SIGKILL every descendant of this process (psutil checks each PID still names the process it found) and
    reap them: what a program left behind has no claim to a graceful stop. Looked at again until none is left:
    a shell may fork its background job between one look and its own death (the job then comes to this
    process, its subreaper)."""
    import psutil

    me = psutil.Process()
    for _round in range(5):
        left = me.children(recursive=True)
        if not left:
            return
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(left, timeout=wait_s)
