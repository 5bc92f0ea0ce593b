"""The orchestrator's handle on a worker process: start, load, run steps with deadlines, stop.

A worker that dies, is OOM-killed or overruns its deadline is data (the workload
became non-functional under this pressure), so those cases come back as typed
exceptions the orchestrator records, never as a crash of the orchestrator.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from bubbleup import procs
from bubbleup.sweep.worker import InferenceRecord, Precision, StepResult

WORKER_MODULE = "bubbleup.sweep.worker"


class WorkerError(Exception):
    """The workload raised; the worker is still alive."""


class WorkerDied(Exception):
    """The worker process exited (crash, os._exit, OOM kill)."""


class WorkerTimeout(Exception):
    """The worker did not answer within the deadline; it has been killed."""


#: A worker's temporary directory is ``<tmp>/bubbleup-worker-<orchestrator PID>-<random>`` (``procs.owned_tmpdir``).
TMP_PREFIX = "bubbleup-worker-"


class WorkerClient:
    def __init__(self, log_path: Path, own_session: bool = True, env: dict[str, str] | None = None,
                 wrap: Callable[[list[str]], list[str]] | None = None,
                 cpus: Sequence[int] | None = None) -> None:  # fmt: skip
        self.log_path = log_path
        self._log: BinaryIO = open(log_path, "ab")
        # A temporary directory of its own, removed with it: TensorFlow's autograph writes a file there for every
        # function it traces and never removes one (thousands a day in /tmp, before).
        self._tmp = str(procs.owned_tmpdir(TMP_PREFIX))
        env = {**(env or {}), "TMPDIR": self._tmp}  # on top of this process's environment (procs.spawn_child)
        try:
            self.proc = procs.spawn_child(
                WORKER_MODULE, [], own_session=own_session, env=env, stderr=self._log, wrap=wrap, cpus=cpus
            )
        except OSError as exc:  # fork refused (ENOMEM, EAGAIN), CPUs not ours: this step fails, the run goes on
            self._log.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise WorkerDied(f"the worker could not be started: {exc}") from None
        assert self.proc.stdout is not None  # spawn_child always pipes stdout
        self.reader = procs.LineReader(self.proc.stdout.fileno())
        self.loaded: dict[str, Any] | None = None
        self._pending: list[dict[str, Any]] = []  # read, not yet awaited

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _send(self, msg: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None  # spawn_child always pipes stdin
        try:
            stdin.write((json.dumps(msg) + "\n").encode())
            stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied(self._death_note()) from None

    def _await(self, expected: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            self._pending.extend(self.reader.read_available())
            while self._pending:  # messages after the one expected stay for the next call
                msg = self._pending.pop(0)
                event = msg.get("event")
                if event == expected:
                    return msg
                if event == "error":
                    raise WorkerError(msg.get("message", "unknown error"))
            if self.reader.closed or self.proc.poll() is not None:
                # Read anything written just before the exit, then report the death.
                for msg in self.reader.read_available():
                    if msg.get("event") == expected:
                        return msg
                raise WorkerDied(self._death_note())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerTimeout(f"no answer within {timeout_s:.0f} s; worker pid {self.pid} killed")
            procs.wait_readable([self.reader.fd], min(remaining, 0.5))

    def _death_note(self) -> str:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # only that: a stop signal (Interrupted) must go on unwinding the run
            self.kill()
        return f"worker pid {self.pid} died: {procs.describe_exit(self.proc.returncode)} (log: {self.log_path.name})"

    def load(self, kind: str, options: dict[str, Any], timeout_s: float,
             adapt: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        """Load the workload; ``adapt`` (the profile table and rule) makes it able to run ``adaptive`` steps."""
        self._send({"cmd": "load", "kind": kind, "options": options, "adapt": adapt})
        self.loaded = self._await("loaded", timeout_s)
        return self.loaded

    def step(self, setting: str, warmup: int, n: int, timeout_s: float,
             precision: Precision | None = None) -> StepResult:  # fmt: skip
        self.begin_step(setting, warmup, n, precision)
        return self.end_step(timeout_s)

    def begin_step(self, setting: str, warmup: int, n: int, precision: Precision | None = None,
                   seconds: float | None = None) -> None:  # fmt: skip
        """Send a step and return at once; :meth:`await_timing` and :meth:`end_step` follow it."""
        given = precision._asdict() if precision is not None else None
        self._send({"cmd": "step", "setting": setting, "warmup": warmup, "n": n, "precision": given,
                    "seconds": seconds})  # fmt: skip

    def await_timing(self, timeout_s: float) -> float:
        """Wait for the step's timed loop to begin (its warm-up done); the worker's clock at that moment."""
        return float(self._await("timing", timeout_s)["t_epoch_s"])

    def end_step(self, timeout_s: float) -> StepResult:
        msg = self._await("step", timeout_s)
        if tuple(msg.get("columns") or ()) != InferenceRecord._fields:
            raise WorkerError(f"worker sent columns {msg.get('columns')}, expected {list(InferenceRecord._fields)}")
        return StepResult(msg["setting"], msg["select_ms"], [InferenceRecord(*row) for row in msg["rows"]],
                          stopped_by=msg["stopped_by"], halfwidth=float(msg["halfwidth"]),
                          cpu_cores=float(msg["cpu_cores"]))  # fmt: skip

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask politely, then make sure: the process is gone when this returns."""
        if self.proc.poll() is None:
            try:
                self._send({"cmd": "close"})
                self._await("closed", timeout_s)
            except (WorkerDied, WorkerTimeout, WorkerError):
                pass
        self.kill()

    def kill(self) -> None:
        """Stop the worker and whatever it started (a ``command`` workload's program and that program's children,
        which the worker's death would leave to init): its process tree as it stands, by PID. Once the worker has
        been reaped its PID may belong to another process by now, so its tree is looked up only before that; done
        again (a timeout's kill, then the close that drops the worker) it does nothing."""
        if self._log.closed:
            return
        tree = procs.descendants_of(self.proc.pid) if self.proc.returncode is None else []
        procs.terminate([self.proc], grace_s=2.0)
        procs.kill_all(tree)
        procs.close_pipes([self.proc])
        self._log.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def alive(self) -> bool:
        return self.proc.poll() is None
