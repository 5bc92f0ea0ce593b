"""Stop signals as an exception: SIGINT, SIGTERM and SIGHUP unwind a run through every ``finally``.

The sweep and campaigns both need it, so children are stopped and completed points kept
whichever of them is running when the terminal closes or a job scheduler sends SIGTERM.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

#: Signals that end a run the way Ctrl-C does: children stopped, completed points kept, manifest
#: "interrupted". SIGHUP is the terminal or ssh connection going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived; everything started is being stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn the stop signals into an exception so every ``finally`` runs and children are stopped."""

    def handler(signum: int, _frame: object) -> None:
        # One signal is enough: ignore repeats so the cleanup it triggers cannot itself be cut short.
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
