"""The workload protocol: what the worker process needs from anything it measures.

Modelled on MLPerf LoadGen's SystemUnderTest + QuerySampleLibrary: the workload
prepares its inputs outside the timed region (`samples()`), and the *worker*
owns the timer around `infer()`. A workload never times itself.

Lifecycle, as driven by ``bubbleup.sweep.worker``::

    w = WorkloadClass(options)          # cheap: no heavy imports here
    w.settings()                        # names of every setting (cheap, no load)
    w.load()                            # heavy: import TF, build/load models
    for each phase:
        w.select(setting)               # switch; its cost is measured and kept
        s = w.samples()                 # inputs for the current setting
        w.infer(s[i])                   # timed by the worker, one call = one inference
    w.close()

Module-level imports in a workload module must stay light (no TensorFlow):
``python -m bubbleup list`` and scenario validation import the class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class NoOptions(BaseModel):
    """Options model for workloads that take none; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Workload:
    """Base class for workloads. Subclasses set ``kind``, ``Options`` and override the hooks."""

    kind: ClassVar[str] = ""
    #: One-line description shown by ``bubbleup list``.
    summary: ClassVar[str] = ""
    #: Pydantic model validating ``workload.options`` in a scenario.
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Top-level modules ``load()`` imports that a plain install may lack (e.g. ``("tensorflow",)``);
    #: ``workloads.get_workload_class`` refuses the kind, saying what to install, when one is missing.
    requires: ClassVar[tuple[str, ...]] = ()
    #: The optional extra of the ``bubbleup`` package that installs ``requires`` (``pip install 'bubbleup[extra]'``).
    extra: ClassVar[str | None] = None
    #: Whether it starts programs of its own: a worker process running it then owns its process tree
    #: (``workloads.lifetime.own_process_tree``), so that what the programs leave goes with the worker.
    starts_programs: ClassVar[bool] = False

    def __init__(self, options: BaseModel) -> None:
        self.options = options

    # -- cheap, callable before load() ------------------------------------
    def settings(self) -> list[str]:
        """Canonical names of every setting, in a sensible sweep order."""
        return ["default"]

    def presets(self) -> dict[str, str]:
        """Aliases (e.g. ``LL`` -> ``128/exit1``) a scenario may use instead of a name."""
        return {}

    # -- heavy lifecycle ----------------------------------------------------
    def load(self) -> None:
        """Import frameworks, build or load models. Untimed, but its duration is recorded."""

    def select(self, setting: str) -> None:
        """Switch to ``setting`` (a canonical name). Its cost is measured by the worker."""

    def samples(self) -> Sequence[Any]:
        """Inputs for the current setting, prepared outside the timed region; cycled through."""
        return [None]

    def infer(self, sample: Any) -> Mapping[str, Any] | None:
        """Run one inference. May return a small mapping of extra facts to record (e.g. which model answered)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources."""

    def metadata(self) -> dict[str, Any]:
        """Versions, thread settings, model facts: written into the run manifest."""
        return {}

    # -- helpers ------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """Map a setting name or preset alias to a canonical setting name (KeyError if unknown)."""
        presets = self.presets()
        if name in presets:
            return presets[name]
        if name in self.settings():
            return name
        raise KeyError(name)
