"""MCDNN (Han et al., MobiSys 2016) as a bubbleup workload: the baseline ApproxNet is compared with.

Settings say which model answers: ``small`` (the specialised model alone; "other" is a
wrong answer), ``full`` (the full model alone) and ``cascade`` (small first, full when the
small one answers "other" or is less confident than ``threshold``). Presets: LL = small,
MM = cascade, HH = full.

The option ``memory`` says what stays resident, as in the thesis's experiment:

* ``all``: both models are loaded by ``load()`` and stay; switching costs only a first trace.
* ``replace``: only the model in use is resident. Switching unloads the other (and trims the
  heap so RSS shows it) and loads the needed one from disk ("random" weights are generated
  again instead, which costs differently); inside a cascade a fall-back swaps models *during*
  the inference, and that time is part of its latency.

Every inference reports ``model`` (which model gave the answer), ``fell_back``,
``model_first_use`` (it ran a model instance that had never run before: a fresh load or
trace) and ``swaps`` (models loaded during it). No TensorFlow at import.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from workloads.base import Workload
from workloads.mcdnn.models import PRESETS, SETTINGS, VARIANTS, top_classes
from workloads.nn import litert_files
from workloads.nn.runtime import RuntimeOptions
from workloads.nn.weights import file_sha256, weights_file

if TYPE_CHECKING:  # for annotations only: importing it loads TensorFlow
    import numpy as np

    from workloads.nn.litert_serving import LiteModel
    from workloads.nn.serving import ServingNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODELS = ("small", "full")


class McdnnOptions(RuntimeOptions):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: "default" (shipped weights), "wide" (4x as wide, paper scale: use "random" weights) or "tiny" (tests).
    variant: Literal["default", "wide", "tiny"] = "default"
    #: all: both models resident; replace: only the model in use (switching loads it: from disk, or
    #: generated again for "random" weights).
    memory: Literal["all", "replace"] = "all"
    #: Softmax confidence the small model needs to answer; below it the cascade falls back.
    threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    #: "default" (shipped), "random" (untrained: latency and memory, not accuracy) or a path, for
    #: each model; checked when the scenario is read.
    small_weights: str = Field(default="default", validate_default=True)
    full_weights: str = Field(default="default", validate_default=True)
    n_samples: int = Field(default=64, ge=1, le=1024)
    seed: int = Field(default=0, ge=0)

    @field_validator("small_weights", "full_weights")
    @classmethod
    def _weights_exist(cls, v: str, info: ValidationInfo) -> str:
        if "variant" in info.data:  # else the variant's own error is reported
            weights_path(v, info.data["variant"], "small" if info.field_name == "small_weights" else "full")
        return v

    @field_validator("model_file")
    @classmethod
    def _one_file_per_model(cls, v: str) -> str:
        if v != "cache":
            raise ValueError("MCDNN serves two models, each from its cached export: model_file must be 'cache'")
        return v


def weights_path(option: str, variant: str, model: str) -> Path | None:
    """The weights file of ``model`` (None for "random"); a missing one raises MissingWeightsError."""
    suffix = "" if variant == "default" else f"-{variant}"
    return weights_file(option, WEIGHTS_DIR / f"{model}{suffix}.npz", "mcdnn", variant, f"mcdnn {model} model: ")


class _Resident:
    """One loaded model: its inference function (TF graph or LiteRT signature) and whether it has run yet."""

    def __init__(self, net: ServingNet | LiteModel, size: int, params: int) -> None:
        self.net, self.size, self.params = net, size, params
        self.fn: Any = net.function(size, 1)  # traced (TF) here: loading a model includes making it runnable
        self.ran = False


class McdnnWorkload(Workload):
    kind = "mcdnn"
    summary = "MCDNN cascade baseline: specialised small model + full model; memory all|replace (TensorFlow)"
    Options = McdnnOptions
    requires = ("tensorflow",)
    extra = "approxnet"

    def __init__(self, options: McdnnOptions) -> None:
        super().__init__(options)
        self.options: McdnnOptions = options
        pair = VARIANTS[options.variant]
        self.sizes = {"small": pair.small_size, "full": pair.full_size}
        self.classes = top_classes()
        self.resident: dict[str, _Resident] = {}
        self.loads = {m: 0 for m in MODELS}
        self._setting: str | None = None
        self._frames: np.ndarray | None = None  # uint8 [n, H, W, 3]
        self._labels: list[int] = []
        self._inputs: dict[int, list[Any]] = {}  # size -> input tensor per frame
        self._samples: dict[str, list[tuple[Any, Any, int]]] = {}
        self._meta: dict[str, Any] = {}
        self._files: dict[str, Path | None] = {}
        self._lite_files: dict[str, Path] = {}  # runtime litert: the exported file of each model

    def settings(self) -> list[str]:
        return list(SETTINGS)

    def presets(self) -> dict[str, str]:
        return dict(PRESETS)

    # -- model residency -------------------------------------------------------
    def _load_model(self, model: str) -> _Resident:
        if self.options.runtime == "litert":
            from workloads.nn.litert_serving import LiteModel

            lite = LiteModel(self._lite_files[model], self.options.intra_op_threads)
            res = _Resident(lite, self.sizes[model], int((litert_files.read_sidecar(lite.path) or {})["parameters"]))
        else:
            net, _ = build_model(self.options, model)
            res = _Resident(net, self.sizes[model], net.param_count())
        self.loads[model] += 1
        self.resident[model] = res
        return res

    def _unload(self, model: str) -> None:
        if self.resident.pop(model, None) is not None:
            from workloads.nn.serving import trim_heap

            gc.collect()
            trim_heap()

    def _ensure(self, model: str) -> tuple[_Resident, int]:
        """The resident model, loading it (and in replace mode unloading the other) if needed; (model, swaps)."""
        res = self.resident.get(model)
        if res is not None:
            return res, 0
        if self.options.memory == "replace":
            for other in [m for m in self.resident if m != model]:
                self._unload(other)
        return self._load_model(model), 1

    # -- lifecycle --------------------------------------------------------------
    def load(self) -> None:
        self._files = {m: model_weights(self.options, m) for m in MODELS}
        t0 = time.perf_counter()
        if self.options.runtime == "litert":
            from workloads.nn.litert_serving import interpreter_class
            from workloads.nn.litert_serving import warm_runtime as warm_litert

            plan = litert_plan(self.options)
            paths, rebuilt = litert_files.ensure_bundle("mcdnn", self.options, [plan[m][0] for m in MODELS],
                                                        sorted(set(self.sizes.values())))  # fmt: skip
            self._lite_files = dict(zip(MODELS, paths, strict=True))
            t_prepare = time.perf_counter() - t0
            framework_mb = warm_litert(self.options.intra_op_threads)
            threads = self.options.intra_op_threads
            facts: dict[str, Any] = {
                "runtime": litert_files.runtime_facts(interpreter_class()[1], paths, threads, rebuilt)
            }
            phase = "export"
        else:
            from workloads.nn.data import sample_frames
            from workloads.nn.tfstart import start_tensorflow, warm_runtime

            tf_facts, t_prepare = start_tensorflow(self.options.intra_op_threads, self.options.inter_op_threads)
            framework_mb = warm_runtime()
            self._frames, self._labels = sample_frames(self.options.seed, self.options.n_samples)
            facts = tf_facts
            phase = "import_tf"
        t1 = time.perf_counter()
        if self.options.memory == "all":
            for m in MODELS:
                self._load_model(m)
        t_models = time.perf_counter() - t1
        self._meta = {
            **facts,
            "framework_rss_mb": round(framework_mb, 1),  # RSS with the runtime warm and no model: the floor
            "load_phases_s": {phase: round(t_prepare, 3), "models": round(t_models, 3)},
            "models": {m: _model_info(self._files[m], m, self.options.variant) for m in MODELS},
        }

    def select(self, setting: str) -> None:
        setting = self.resolve(setting)
        needed = ("small", "full") if setting == "cascade" else (setting,)
        if self.options.memory == "replace":
            for m in [m for m in self.resident if m not in needed]:
                self._unload(m)
            self._ensure(needed[0])  # a replace-mode cascade starts with the small model only
        else:
            for m in needed:
                self._ensure(m)
        self._setting = setting

    def samples(self) -> Sequence[Any]:
        if self._setting is None:
            raise RuntimeError("select() a setting before asking for samples")
        cached = self._samples.get(self._setting)
        if cached is None:
            small = self._inputs_at(self.sizes["small"]) if self._setting != "full" else None
            full = self._inputs_at(self.sizes["full"]) if self._setting != "small" else None
            cached = [
                (small[i] if small else None, full[i] if full else None, self._labels[i])
                for i in range(len(self._labels))
            ]
            self._samples[self._setting] = cached
        return cached

    def _inputs_at(self, size: int) -> list[Any]:
        if size not in self._inputs:
            if self.options.runtime == "litert":
                prepared = litert_files.load_inputs(self.options.seed, self.options.n_samples, size)
                self._labels = [label for _, label in prepared]
            elif self._frames is None:
                raise RuntimeError("load() the workload before asking for samples")
            else:
                from workloads.nn.serving import prepare_samples

                prepared = prepare_samples(self._frames, self._labels, size)
            self._inputs[size] = [x for x, _ in prepared]
        return self._inputs[size]

    def _run(self, model: str, x: Any) -> tuple[np.ndarray, bool, int]:
        res, swaps = self._ensure(model)
        first = not res.ran
        out = res.fn(x)
        out = (out if self.options.runtime == "litert" else out.numpy())[0]
        res.ran = True
        return out, first, swaps

    def infer(self, sample: Any) -> Mapping[str, Any] | None:
        x_small, x_full, label = sample
        setting = self._setting
        fell_back = False
        if setting == "full":
            logits, first, swaps = self._run("full", x_full)
            pred, model = int(logits.argmax()), "full"
        else:
            from workloads.mcdnn.models import small_answers

            logits, first, swaps = self._run("small", x_small)
            threshold = self.options.threshold if setting == "cascade" else 0.0
            pred, model = int(small_answers(logits, threshold, self.classes)[0]), "small"
            if setting == "cascade" and pred < 0:
                logits, first_full, swaps_full = self._run("full", x_full)
                pred, model, fell_back = int(logits.argmax()), "full", True
                first, swaps = first or first_full, swaps + swaps_full
        return {
            "model": model,
            "fell_back": fell_back,
            "model_first_use": first,
            "swaps": swaps,
            "pred": pred,
            "correct": pred == label,
        }

    def close(self) -> None:
        for m in list(self.resident):
            self._unload(m)
        self._samples.clear()
        self._inputs.clear()

    def input_bytes(self) -> int:
        """Bytes held by prepared input tensors (so memory reports can separate inputs from the models)."""
        return sum(int(getattr(x, "nbytes", 0) or x.numpy().nbytes) for per in self._inputs.values() for x in per)

    def metadata(self) -> dict[str, Any]:
        return {
            "variant": self.options.variant,
            "memory": self.options.memory,
            "threshold": self.options.threshold,
            "specialised_classes": list(self.classes),
            "input_sizes": dict(self.sizes),
            # how often each model has been loaded so far: the manifest keeps it as of the worker's load (the
            # swaps of a step are in each inference's record, "swaps"), so the key says when it was counted
            "model_loads_so_far": dict(self.loads),
            **self._meta,
        }


def model_weights(options: McdnnOptions, model: str) -> Path | None:
    """The weights file ``model`` ("small" / "full") is built from (None: untrained)."""
    return weights_path(options.small_weights if model == "small" else options.full_weights, options.variant, model)


def build_model(options: McdnnOptions, model: str) -> tuple[ServingNet, Path | None]:
    """``model`` as TF serving graphs, and its weights file: the TF runtime's model and the LiteRT export's source."""
    from workloads.nn.serving import build_net

    pair = VARIANTS[options.variant]
    path = model_weights(options, model)
    net, _ = build_net(path, pair.small if model == "small" else pair.full, options.seed + (model == "full"))
    return net, path


def litert_plan(options: McdnnOptions) -> dict[str, tuple[litert_files.ModelRequest, dict[str, tuple[int, int | None]],
                                                          dict[str, tuple[str, int, int]]]]:  # fmt: skip
    """Per model, the LiteRT file it is served from: one signature ``exit1`` at the model's input size."""
    pair = VARIANTS[options.variant]
    plan = {}
    for model in MODELS:
        spec = pair.small if model == "small" else pair.full
        size = pair.small_size if model == "small" else pair.full_size
        identity = litert_files.weights_identity(model_weights(options, model), options.seed + (model == "full"))
        req = litert_files.ModelRequest("mcdnn", model, spec.name, identity, options.quantize)
        signatures: dict[str, tuple[int, int | None]] = {"exit1": (1, size)}
        plan[model] = (req, signatures, {model: ("exit1", 1, size)})
    return plan


def _model_info(path: Path | None, model: str, variant: str) -> dict[str, Any]:
    import json

    info: dict[str, Any] = {"weights_file": str(path) if path else "random"}
    pair = VARIANTS[variant]
    spec = pair.small if model == "small" else pair.full
    info["network"] = spec.name
    if path is not None:
        info["weights_sha256"] = file_sha256(path)
        report = path.parent / ("cascade.json" if variant == "default" else f"cascade-{variant}.json")
        if report.is_file():
            info["heldout"] = json.loads(report.read_text()).get("heldout_top1")
    return info
