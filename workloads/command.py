"""Measure an external program: one run of it = one timed inference.

Options::

    argv: [./infer, --size, "{setting}"]   # "{setting}" is replaced by the setting name
    settings: [small, large]                # optional, default [default]
    check: true                             # a non-zero exit makes the step fail (default)

The program runs in this worker's session and is killed with the worker if the
orchestrator dies, like every process bubbleup starts. The worker is its subreaper: what the
program leaves running (a shell's backgrounded child) stays among the worker's descendants, and is
stopped when the workload closes, or with the worker's whole tree when a step times out.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


def _die_with_worker() -> None:
    # Runs in the child between fork and exec: ask for SIGKILL when the worker dies.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)


class CommandWorkload(Workload):
    kind = "command"
    summary = "an external program; one run = one timed inference"
    Options = CommandOptions

    def load(self) -> None:
        # PR_SET_CHILD_SUBREAPER: orphans of the program come to this worker, not init, so they can be stopped
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)

    def close(self) -> None:
        """Stop what the program runs left behind (untimed: here, not after each inference)."""
        import psutil

        left = psutil.Process().children(recursive=True)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(left, timeout=2.0)

    def __init__(self, options: CommandOptions) -> None:
        super().__init__(options)
        self.options: CommandOptions = options
        self._argv: list[str] = list(options.argv)

    def settings(self) -> list[str]:
        return list(self.options.settings)

    def select(self, setting: str) -> None:
        self._argv = [a.replace("{setting}", setting) for a in self.options.argv]

    def infer(self, sample: Any) -> Mapping[str, Any] | None:
        done = subprocess.run(
            self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_worker, check=False,
        )  # fmt: skip
        if self.options.check and done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            said = f": {tail[0][:200]}" if tail else ""  # its last line of stderr, when it wrote one
            raise RuntimeError(f"{self._argv[0]} exited with status {done.returncode}{said}")
        return None

    def metadata(self) -> dict[str, Any]:
        return {"argv": list(self.options.argv)}
