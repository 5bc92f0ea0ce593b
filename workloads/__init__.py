"""Workload registry: built-in workloads plus third-party ones from entry points.

Third-party packages register a workload class under the ``bubbleup.workloads``
entry-point group, e.g. in their setup.cfg::

    [options.entry_points]
    bubbleup.workloads =
        mynet = mypackage.bench:MyNetWorkload

Classes are imported lazily, only when a kind is asked for, so listing kinds
never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from workloads.base import Workload

ENTRY_POINT_GROUP = "bubbleup.workloads"

BUILTIN: dict[str, str] = {
    "synthetic": "workloads.synthetic:SyntheticWorkload",
    "python": "workloads.python_call:PythonCallWorkload",
    "command": "workloads.command:CommandWorkload",
    "approxnet": "workloads.approxnet:ApproxNetWorkload",
    "mcdnn": "workloads.mcdnn:McdnnWorkload",
}


class UnknownWorkload(KeyError):
    """Raised for a workload kind that is neither built in nor registered."""


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
    """The workload class for ``kind``; UnknownWorkload if there is none."""
    kinds = available_kinds()
    if kind not in kinds:
        raise UnknownWorkload(f"unknown workload kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return _import_target(kinds[kind])
