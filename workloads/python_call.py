"""Measure any importable Python function: one call = one timed inference.

Options::

    function: "mypkg.bench:predict"   # called once per inference
    setup: "mypkg.bench:prepare"      # optional: called at each switch with the setting name;
                                      # its return value is passed to `function`
    settings: [small, large]          # optional, default [default]
    path: ./src                       # optional directory prepended to sys.path
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from workloads.base import Workload

_TARGET = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
_NO_STATE = object()


class PythonCallOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    function: str = Field(default="workloads.python_call:noop", pattern=_TARGET)
    setup: str | None = Field(default=None, pattern=_TARGET)
    settings: tuple[str, ...] = Field(default=("default",), min_length=1)
    path: str | None = None


def noop(*_args: Any) -> None:
    """The default function: measures the harness's own per-inference overhead."""


def _not_loaded(*_args: Any) -> None:
    raise RuntimeError("load() the workload before calling infer()")


def resolve(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class PythonCallWorkload(Workload):
    kind = "python"
    summary = "any importable module:function, called once per inference (optional setup per setting)"
    Options = PythonCallOptions

    def __init__(self, options: PythonCallOptions) -> None:
        super().__init__(options)
        self.options: PythonCallOptions = options
        self._fn: Callable[..., Any] = _not_loaded
        self._setup: Callable[[str], Any] | None = None
        self._samples: list[Any] = [_NO_STATE]

    def settings(self) -> list[str]:
        return list(self.options.settings)

    def load(self) -> None:
        if self.options.path and self.options.path not in sys.path:
            sys.path.insert(0, self.options.path)
        self._fn = resolve(self.options.function)
        self._setup = resolve(self.options.setup) if self.options.setup else None

    def select(self, setting: str) -> None:
        self._samples = [self._setup(setting)] if self._setup else [_NO_STATE]

    def samples(self) -> Sequence[Any]:
        return self._samples

    def infer(self, sample: Any) -> Mapping[str, Any] | None:
        if sample is _NO_STATE:
            self._fn()
        else:
            self._fn(sample)
        return None

    def metadata(self) -> dict[str, Any]:
        return {"function": self.options.function, "setup": self.options.setup}
