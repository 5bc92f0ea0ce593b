"""Child processes that cannot outlive the orchestrator, and line-oriented JSON pipes to them.

Every child the harness starts (bubbles, workers) goes through ``spawn_child``:
it is started lean (``python -m <module>``, never a fork of the heavy
orchestrator), told the orchestrator's PID so it can ask Linux for SIGKILL when
the orchestrator dies (PR_SET_PDEATHSIG), and given a stdin pipe whose closing
is a second, independent death signal. Stopping is by PID only. Their temporary
directories (``owned_tmpdir``) carry the owner's PID, so whoever comes next
removes those a SIGKILL left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: prctl, looked up once here in the parent: ``tied_to_this_process``'s hook runs between fork and exec, where a shim's
#: other threads may hold locks a lookup (dlopen) would need.
try:
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the stdin watch still covers children
    _prctl = None

# Children run single-threaded numeric code unless told otherwise; keep BLAS pools from
# multiplying threads behind the scheduler's back.
_LEAN_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def spawn_child(
    module: str,
    args: list[str],
    *,
    own_session: bool,
    env: dict[str, str] | None = None,
    stderr: int | IO[bytes] | None = subprocess.PIPE,
    wrap: Callable[[list[str]], list[str]] | None = None,
    cpus: Sequence[int] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m module args`` tied to this process's life (``wrap`` e.g. joins a cgroup first).

    ``cpus`` pins the child to those CPUs right after it starts, before it has imported anything
    (its threads, and stress-ng's workers, inherit the mask); the same for every child and backend.
    """
    child_env = {**os.environ, **_LEAN_ENV, **(env or {})}
    cmd = [sys.executable, "-m", module, *args, "--parent-pid", str(os.getpid())]
    if wrap is not None:
        cmd = wrap(cmd)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=child_env,
        start_new_session=own_session,
        close_fds=True,
    )
    if cpus is not None:
        try:
            os.sched_setaffinity(proc.pid, cpus)
        except OSError:
            terminate([proc], grace_s=0.5)
            close_pipes([proc])
            raise
    return proc


class LineReader:
    """Non-blocking reader of newline-delimited JSON from a child's pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""
        self.closed = False

    def read_available(self) -> list[dict[str, Any]]:
        """Read what is there without blocking; return the complete messages."""
        messages: list[dict[str, Any]] = []
        while not self.closed:
            ready, _, _ = select.select([self.fd], [], [], 0)
            if not ready:
                break
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.closed = True
                break
            self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if line.strip():
                try:
                    messages.append(json.loads(line))
                except json.JSONDecodeError:
                    messages.append({"event": "garbage", "line": line.decode(errors="replace")[:200]})
        return messages


def wait_readable(fds: list[int], timeout: float) -> None:
    """Block until one of ``fds`` is readable or ``timeout`` passes."""
    if fds and timeout > 0:
        select.select(fds, [], [], timeout)
    elif timeout > 0:
        time.sleep(timeout)


def stderr_tail(proc: subprocess.Popen[bytes], limit: int = 400) -> str:
    """The last words a dead child wrote to stderr, on one line."""
    if proc.stderr is None or proc.poll() is None:
        return ""
    try:
        data = proc.stderr.read() or b""
    except (OSError, ValueError):
        return ""
    text = " | ".join(line.strip() for line in data.decode(errors="replace").splitlines() if line.strip())
    return text[-limit:]


def describe_exit(returncode: int | None) -> str:
    """'exit status 1' or 'killed by SIGKILL (out of memory?)'."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {returncode}"


def terminate(procs: Sequence[subprocess.Popen[Any]], grace_s: float = 3.0) -> None:
    """SIGTERM each child by PID, wait up to ``grace_s``, then SIGKILL the stragglers and reap all."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        remaining = deadline - time.monotonic()
        try:
            p.wait(timeout=max(remaining, 0.01))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


def close_pipes(procs: list[subprocess.Popen[bytes]]) -> None:
    """Close our ends of the children's pipes (after their last words were read)."""
    for p in procs:
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, BrokenPipeError):
                    stream.close()


# -- the child side: dying with the parent ------------------------------------


def tied_to_this_process() -> Callable[[], None]:
    """A ``preexec_fn`` for a program a shim starts (stress-ng, a co-runner): SIGKILL it when the shim dies. Made
    in the shim, before the fork, so that the child can tell whether the shim died before prctl took effect (its
    parent is then another process) and exit instead of running on unowned."""
    shim = os.getpid()

    def preexec() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != shim:
            os._exit(0)

    return preexec


def become_subreaper() -> None:
    """Have orphaned descendants re-parented to this process instead of init (PR_SET_CHILD_SUBREAPER): a shim
    then finds every process its program left behind (a backgrounded child of a shell, a daemon that double
    forked, even into a session of its own) among its own descendants, and stops them all."""
    if _prctl is not None:
        _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def stop_descendants(grace_s: float = 1.0) -> None:
    """SIGTERM every descendant of this process, SIGKILL what is left after ``grace_s`` (and whatever appeared
    meanwhile: a program forking as it dies), and reap them. By process object, never by name or a bare PID
    number: psutil checks that a PID still names the process it found before signalling it."""
    import psutil

    me = psutil.Process()
    procs = me.children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    psutil.wait_procs(procs, timeout=grace_s)
    for _round in range(3):
        procs = me.children(recursive=True)
        if not procs:
            return
        kill_all(procs, wait_s=0.5)


def descendants_of(pid: int) -> list[Any]:
    """The descendants of ``pid`` now (psutil processes; empty once it is gone)."""
    import psutil

    try:
        return process_tree(psutil.Process(pid))[1:]
    except psutil.Error:
        return []


def kill_all(processes: Sequence[Any], wait_s: float = 2.0) -> None:
    """SIGKILL each of ``processes`` (psutil processes) still running, and wait for them: psutil checks a PID still
    names the process it found before signalling it, so a reused PID is never hit."""
    import psutil

    for p in processes:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(list(processes), timeout=wait_s)


def process_tree(root: Any) -> list[Any]:
    """``root`` (a psutil.Process) and all its descendants; empty once it is gone."""
    import psutil

    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` (SIGKILL; a shim that must stop its program's tree first asks for SIGTERM) when
    the parent dies; exit now if it already has."""
    if _prctl is not None:  # not Linux: the stdin watch still covers us
        _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent_pid:  # parent died before prctl took effect
        os._exit(0)


def exit_when_stdin_closes(then: Callable[[], None] | None = None) -> None:
    """Exit as soon as the parent's end of our stdin pipe closes (the parent died or let go); with ``then``,
    call it instead (a shim stops its program's tree and exits by itself)."""

    def watch() -> None:
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked inside the buffered reader holds its
        # lock, and interpreter shutdown then waits a second for it and aborts ("could not acquire lock").
        fd = sys.stdin.fileno()
        try:
            while os.read(fd, 4096):
                pass
        finally:
            if then is None:
                os._exit(0)
            then()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def owned_tmpdir(prefix: str) -> Path:
    """A new directory ``<tmp>/<prefix><this PID>-<random>``, after removing every ``<prefix><PID>-*`` whose
    process is gone: a SIGKILL (an OOM kill, a lost Ray node) gives its owner no chance to remove it. A live
    owner's directory is never touched in one PID namespace (a reused PID only leaves a dead one's behind); a
    container sharing this /tmp but not its PIDs could see a live owner as gone."""
    import psutil  # here, not at the top: bubbles import this module and start lean

    def gone(pid: int) -> bool:  # a zombie has exited: it runs nothing and will never remove its directory
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    for stale in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        owner = stale.name[len(prefix):].split("-")[0]
        if owner.isdigit() and gone(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
