"""Measure an external program: one run of it = one timed inference.

Options::

    argv: [./infer, --size, "{setting}"]   # "{setting}" is replaced by the setting name
    settings: [small, large]                # optional, default [default]
    check: true                             # a non-zero exit makes the step fail (default)

The program runs in this worker's session and is killed with the worker if the
orchestrator dies, like every process bubbleup starts. The worker is its subreaper: what the
program leaves running (a shell's backgrounded child) stays among the worker's descendants, and is
stopped when the workload closes, with the worker's whole tree when a step times out, and by the
worker when the orchestrator dies (``workloads.lifetime``). Such leftovers are reaped between runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workloads import lifetime
from workloads.base import Workload


class CommandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    argv: tuple[str, ...] = Field(default=("true",), min_length=1)
    settings: tuple[str, ...] = Field(default=("default",), min_length=1)
    check: bool = True

    @field_validator("argv")
    @classmethod
    def _a_program_here(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        """Refused when the scenario is read, as a command bubble is: else every step fails and the run ends 0."""
        if "{setting}" not in argv[0] and shutil.which(argv[0]) is None:
            raise ValueError(f"{argv[0]!r} is not a program here (not on PATH, not a file)")
        return argv


class CommandWorkload(Workload):
    kind = "command"
    summary = "an external program; one run = one timed inference"
    Options = CommandOptions
    starts_programs = True

    def __init__(self, options: CommandOptions) -> None:
        super().__init__(options)
        self.options: CommandOptions = options
        self._argv: list[str] = list(options.argv)
        self._tie: Callable[[], None] | None = None
        self._stderr: IO[bytes] | None = None

    def load(self) -> None:
        self._tie = lifetime.tied_to_this_process()
        # stderr goes to a file, not a pipe: a program's backgrounded child inherits it, and reading a pipe to
        # its end waited for that child (a program ending in `sleep 2 &` measured 2 s an inference)
        self._stderr = tempfile.TemporaryFile(buffering=0)  # unbuffered: tell() is the file's offset

    def close(self) -> None:
        """Stop what the program runs left behind (untimed: here, not after each inference), in a worker that
        owns its process tree: loaded in-process, the process's other children are none of its business."""
        if lifetime.owns_process_tree():
            lifetime.stop_descendants()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def settings(self) -> list[str]:
        return list(self.options.settings)

    def select(self, setting: str) -> None:
        self._argv = [a.replace("{setting}", setting) for a in self.options.argv]

    def infer(self, sample: Any) -> Mapping[str, Any] | None:
        err = self._stderr
        if err is None or self._tie is None:
            raise RuntimeError("load() the workload before running it")
        if err.tell():  # what the last run wrote (the offset is shared with the program's descriptor)
            err.seek(0)
            err.truncate()
        with lifetime.spawning:  # not while the worker is stopping its tree for good
            program = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                       preexec_fn=self._tie)  # fmt: skip
        returncode = program.wait()
        _reap_orphans()
        if self.options.check and returncode != 0:
            err.seek(0)
            tail = err.read()[-4096:].decode(errors="replace").strip().splitlines()[-1:]
            said = f": {tail[0][:200]}" if tail else ""  # its last line of stderr, when it wrote one
            raise RuntimeError(f"{self._argv[0]} exited with status {returncode}{said}")
        return None

    def metadata(self) -> dict[str, Any]:
        return {"argv": list(self.options.argv)}


def _reap_orphans() -> None:
    """Reap the program's orphans that have ended (the worker is their subreaper): a program that leaves a
    helper behind on every run would otherwise pile up zombies over a step."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
