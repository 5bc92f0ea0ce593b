"""Stop signals as an exception: SIGINT, SIGTERM and SIGHUP unwind a run through every ``finally``.

The sweep and campaigns both need it, so children are stopped and completed points kept
whichever of them is running when the terminal closes or a job scheduler sends SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Signals that end a run the way Ctrl-C does: children stopped, completed points kept, manifest
#: "interrupted". SIGHUP is the terminal or ssh connection going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: :func:`held`'s state: how deep in held blocks the run is, and the stop signal that arrived meanwhile (0: none).
_held = {"depth": 0, "signum": 0}


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived; everything started is being stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn the stop signals into an exception so every ``finally`` runs and children are stopped.

    A signal ignored on entry stays ignored (``nohup`` ignores SIGHUP, and a run under it must outlive the
    terminal). Outside the main thread (a run started from a thread through the API) Python cannot install
    handlers: the block runs with the process's own, and :func:`held` still works."""

    def handler(signum: int, _frame: object) -> None:
        # One signal is enough: ignore repeats so the cleanup it triggers cannot itself be cut short.
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        if _held["depth"]:
            _held["signum"] = signum  # raised as the held block ends
            return
        raise Interrupted(signum)

    _held["signum"] = 0  # a new run: nothing held from an earlier one in this process
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def held(then_raise: bool = True) -> Iterator[None]:
    """A stop signal arriving inside this block is raised as it ends, not in the middle: a point's bubbles being
    stopped (a signal between SIGTERM and the reaping left them running) and its rows being committed (a point
    whose every step was measured was lost). If the block itself fails, its own error goes on; so does the one
    being handled when the block is cleanup on the way out (``then_raise=False``)."""
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
    if _held["depth"]:
        return  # an outer held block raises it
    signum, _held["signum"] = _held["signum"], 0
    if then_raise and signum:
        raise Interrupted(signum)
