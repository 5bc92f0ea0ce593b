"""Measure an external program: one run of it = one timed inference.

Options::

    argv: [./infer, --size, "{setting}"]   # "{setting}" is replaced by the setting name
    settings: [small, large]                # optional, default [default]
    check: true                             # a non-zero exit makes the step fail (default)

The program runs in this worker's session and is killed with the worker if the
orchestrator dies, like every process bubbleup starts.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from workloads.base import Workload


class CommandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    argv: tuple[str, ...] = Field(default=("true",), min_length=1)
    settings: tuple[str, ...] = Field(default=("default",), min_length=1)
    check: bool = True


def _die_with_worker() -> None:
    # Runs in the child between fork and exec: ask for SIGKILL when the worker dies.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)


class CommandWorkload(Workload):
    kind = "command"
    summary = "an external program; one run = one timed inference"
    Options = CommandOptions

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
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"{self._argv[0]} exited with status {done.returncode}: {tail[0][:200]}")
        return None

    def metadata(self) -> dict[str, Any]:
        return {"argv": list(self.options.argv)}
