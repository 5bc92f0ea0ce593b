"""One bubbleup run per machine at a time: two runs on one machine contaminate each other's numbers.

A run *holds the machine* while it has a registration file in the lock directory locked with
``fcntl.flock``. The kernel drops a flock when its process dies, however it dies (SIGKILL, OOM
kill, power cut of the session), so a crashed run can never leave a stale lock: a registration
file nobody has locked is a leftover and is removed by the next run. Checking who runs and
registering happen under a short exclusive flock on ``machine.lock``, so two runs starting in the
same instant cannot both see an empty machine.

A run that finds another holder refuses to start (:class:`MachineBusy`, exit 2, one line naming
the holder's PID and run directory) unless it opted in (``--allow-concurrent``). An opted-in run
registers too, so later runs see it, and leaves a note in each holder's inbox
(``<holder>.found``), so the holder learns it was found by another run. Both runs record the
other in their manifests, and both are INVALID (``bubbleup.analysis.validity``).

Where: ``$BUBBLEUP_LOCK_DIR`` if set (tests give each test its own), else ``/tmp/bubbleup-<uid>``: one
path per user whatever the shell's environment (``TMPDIR`` and ``XDG_RUNTIME_DIR`` differ between an ssh
login, cron and ``env -i``, and logind removes ``/run/user/<uid>`` at the last logout, under a run still
going), created private (0700), refused if it belongs to someone else. Runs of *other users* are not seen;
the machine-busy check (outside CPU in telemetry) still catches their load.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from bubbleup.errors import UserError

LOCK_DIR_ENV = "BUBBLEUP_LOCK_DIR"
GUARD = "machine.lock"
SUFFIX = ".run.json"
INBOX = ".found"


class MachineBusy(UserError):
    """Another bubbleup run holds this machine (exit status 2: a choice for the user, not a failure)."""


@dataclass(frozen=True)
class Holder:
    """A registered run, as its registration file says."""

    pid: int
    run_dir: str
    started_at: str
    token: str  # pid and start time: names its files, so a reused PID never reads another run's inbox
    host: str = ""

    def describe(self) -> str:
        return f"pid {self.pid}, run directory {self.run_dir} (since {self.started_at})"


def lock_dir() -> Path:
    """The per-user directory holding the machine lock (see the module docstring)."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    root = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else tempfile.gettempdir()
    return Path(root) / f"bubbleup-{os.getuid()}"


def _ensure_dir(path: Path) -> None:
    """Create the lock directory private to us; refuse one that is someone else's (or a symlink)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the machine-lock directory: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise UserError(f"{path}: the machine-lock directory is not a directory owned by this user; remove it "
                        f"or set {LOCK_DIR_ENV}")  # fmt: skip


@contextlib.contextmanager
def _guard(directory: Path) -> Iterator[None]:
    """The short exclusive section in which runs are listed and one registers."""
    with open(directory / GUARD, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _is_locked(path: Path) -> bool:
    """True if some process holds a flock on ``path`` (its owner is alive)."""
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def _read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(int(data["pid"]), str(data["run_dir"]), str(data["started_at"]), str(data["token"]),
                      str(data.get("host", "")))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_holders(directory: Path | None = None) -> list[Holder]:
    """Runs registered and alive now, oldest first; leftovers of dead runs are removed on the way."""
    directory = directory if directory is not None else lock_dir()
    holders = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if _is_locked(path):
            holder = _read_holder(path)
            if holder is not None:
                holders.append(holder)
        else:
            _remove_run_files(directory, path.name[: -len(SUFFIX)])
    return sorted(holders, key=lambda h: h.started_at)


def _remove_run_files(directory: Path, token: str) -> None:
    for name in (token + SUFFIX, token + INBOX):
        with contextlib.suppress(OSError):
            (directory / name).unlink()


@dataclass
class MachineLock:
    """This run's hold on the machine; :meth:`release` (or process death) lets it go."""

    directory: Path
    me: Holder
    found_at_start: list[Holder] = field(default_factory=list)
    _file: IO[str] | None = None

    def concurrent(self) -> list[dict[str, Any]]:
        """Every other run this one overlapped: those it found at start, and those that found it since."""
        out = [{**asdict(h), "relation": "was running when this run started"} for h in self.found_at_start]
        try:
            lines = (self.directory / (self.me.token + INBOX)).read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            with contextlib.suppress(ValueError, TypeError):
                out.append({**json.loads(line), "relation": "started while this run was running"})
        return out

    def release(self) -> None:
        if self._file is None:
            return
        try:
            with _guard(self.directory):
                _remove_run_files(self.directory, self.me.token)
        except (OSError, UserError):
            pass  # the directory is gone (removed under us): nothing is left to clean, and the run's end stands
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> MachineLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_dir(a: Path | str, b: Path | str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def acquire(run_dir: Path | str, allow_concurrent: bool = False, directory: Path | None = None) -> MachineLock:
    """Hold the machine for the run writing ``run_dir``; :class:`MachineBusy` if another run holds it
    and ``allow_concurrent`` is false."""
    directory = directory if directory is not None else lock_dir()
    _ensure_dir(directory)
    pid = os.getpid()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    me = Holder(pid, str(run_dir), started, f"{pid}-{time.time_ns()}", socket.gethostname())
    with _guard(directory):
        others = [h for h in live_holders(directory) if h.pid != pid]
        same = [h for h in others if _same_dir(h.run_dir, run_dir)]
        if same:  # never two writers on one run directory, opted in or not
            raise MachineBusy(f"{run_dir}: this run directory is being written by another bubbleup run: "
                              f"{same[0].describe()}")  # fmt: skip
        if others and not allow_concurrent:
            h = others[0]
            more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
            raise MachineBusy(f"another bubbleup run holds this machine: {h.describe()}{more}; wait for it to "
                              f"finish, or pass --allow-concurrent (this run will then be INVALID)")  # fmt: skip
        f = open(directory / (me.token + SUFFIX), "w")
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(json.dumps(asdict(me)))
        f.flush()
        for h in others:
            with contextlib.suppress(OSError), open(directory / (h.token + INBOX), "a") as inbox:
                inbox.write(json.dumps(asdict(me)) + "\n")
    return MachineLock(directory, me, others, f)
