"""Workload registry: built-in workloads plus third-party ones from entry points.

Third-party packages register a workload class under the ``bubbleup.workloads``
entry-point group, e.g. in their setup.cfg::

    [options.entry_points]
    bubbleup.workloads =
        mynet = mypackage.bench:MyNetWorkload

Classes are imported lazily, only when a kind is asked for, so listing kinds
never imports TensorFlow.

A workload class may declare the modules it needs beyond bubbleup's own dependencies
(``requires``) and the optional extra that installs them (``extra``): asking for such a
kind where one is missing raises ``MissingExtra``, one line saying what to install, e.g.
``approxnet needs TensorFlow, which is not installed here: pip install 'bubbleup[approxnet]'``.
Whether a module is there is looked up, not tried: importing TensorFlow takes seconds.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from workloads.base import Workload

ENTRY_POINT_GROUP = "bubbleup.workloads"

BUILTIN: dict[str, str] = {
    "synthetic": "workloads.synthetic:SyntheticWorkload",
    "reporter": "workloads.reporter:ReporterWorkload",
    "python": "workloads.python_call:PythonCallWorkload",
    "command": "workloads.command:CommandWorkload",
    "approxnet": "workloads.approxnet:ApproxNetWorkload",
    "mcdnn": "workloads.mcdnn:McdnnWorkload",
}


#: How messages name a required module (others by their module name).
DISPLAY_NAMES: dict[str, str] = {
    "tensorflow": "TensorFlow",
    "keras": "Keras",
    "ai_edge_litert": "LiteRT (ai-edge-litert)",
}


class UnknownWorkload(KeyError):
    """Raised for a workload kind that is neither built in nor registered; the message is ``args[0]``."""

    def __str__(self) -> str:  # KeyError's own str() quotes its argument as if it were a key
        return str(self.args[0]) if self.args else ""


class MissingExtra(UnknownWorkload):
    """Raised for a workload kind whose required modules are not installed: the message says what to install."""

    def __init__(self, kind: str, modules: Sequence[str], extra: str | None) -> None:
        names = " and ".join(DISPLAY_NAMES.get(m, m) for m in modules)
        install = f": pip install 'bubbleup[{extra}]'" if extra else ""
        verb = "is" if len(modules) == 1 else "are"
        super().__init__(f"{kind} needs {names}, which {verb} not installed here{install}")
        self.kind, self.modules, self.extra = kind, tuple(modules), extra

    def __reduce__(self) -> tuple[type[MissingExtra], tuple[str, tuple[str, ...], str | None]]:
        return type(self), (self.kind, self.modules, self.extra)  # args holds the message, not these


def importable(module: str) -> bool:
    """Whether ``module`` can be imported here, found without importing it (``find_spec``)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules without a __spec__: it is imported already
        return sys.modules.get(module) is not None
    except ImportError:  # a parent package is missing, or an import hook refuses the name
        return False


def check_requirements(cls: type[Workload], kind: str | None = None) -> None:
    """Raise MissingExtra when a module in ``cls.requires`` is not installed."""
    missing = [m for m in cls.requires if not importable(m)]
    if missing:
        raise MissingExtra(kind or cls.kind, missing, cls.extra)


def _import_target(target: str) -> type[Workload]:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def available_kinds() -> dict[str, str]:
    """kind -> 'module:Class' for every built-in and entry-point workload."""
    kinds = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kinds.setdefault(ep.name, ep.value)
    return kinds


def get_workload_class(kind: str) -> type[Workload]:
    """The workload class for ``kind``; UnknownWorkload if there is none, MissingExtra if it cannot run here."""
    kinds = available_kinds()
    if kind not in kinds:
        raise UnknownWorkload(f"unknown workload kind {kind!r}; known: {', '.join(sorted(kinds))}")
    cls = _import_target(kinds[kind])
    check_requirements(cls, kind)
    return cls
