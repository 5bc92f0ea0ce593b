"""ApproxNet (Xu et al., arXiv 1909.02068) as a bubbleup workload: one network, many settings.

A ResNet-style backbone accepts any input size; outports at several depths end in spatial
pyramid pooling and a small classifier. A setting is (input size, outport), named
``"<size>px/exit<k>"``; presets LL / MM / HH pick the cheapest, a middle and the richest.

Serving (see ``workloads/nn/serving.py``, shared with MCDNN): ``load()`` imports TensorFlow,
fixes its thread pools and GPU memory growth, and restores the folded inference weights, but
traces nothing. ``select()`` fetches the setting's compiled function (one per outport by
default, option ``trace``), tracing it the first time: the worker's ``select_ms`` holds the
tracing cost, the function's first inference its graph optimisation, and the first inference
at each new input size the kernel creation for that shape. A revisit is a dictionary lookup
and costs nothing. Inputs are resized outside the timed region (``samples()``), like a camera
pipeline delivering frames at the chosen size; ``infer()`` is one call of the compiled function.

This module imports no TensorFlow: ``bubbleup list`` and scenario validation import it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from workloads.approxnet.spec import (
    APPROXNET_VARIANTS,
    DEFAULT_SIZES,
    parse_setting,
    presets_for,
    setting_grid,
    setting_name,
)
from workloads.base import Workload
from workloads.nn import litert_files
from workloads.nn.runtime import RuntimeOptions
from workloads.nn.weights import file_sha256, weights_file

if TYPE_CHECKING:  # for annotations only: importing them loads numpy and TensorFlow
    import numpy as np

    from workloads.nn.litert_serving import LiteModel
    from workloads.nn.serving import ServingNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ApproxNetOptions(RuntimeOptions):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: Network size: "default" (shipped weights), "wide" (4x as wide, ResNet-18's parameter count:
    #: use weights "random") or "tiny" (tests; pass weights or "random").
    variant: Literal["default", "wide", "tiny"] = "default"
    #: Input sizes (px) of the setting grid.
    sizes: tuple[int, ...] = Field(default=DEFAULT_SIZES, min_length=1, max_length=32)
    #: Outports (1 = shallowest) of the setting grid.
    outports: tuple[int, ...] = Field(default=(1, 2, 3), min_length=1, max_length=16)
    #: "default" (the variant's shipped file), "random" (untrained, deterministic: for latency and
    #: memory, not accuracy) or a path; checked when the scenario is read.
    weights: str = Field(default="default", validate_default=True)
    #: Frames cycled through per setting (one frame from each of as many held-out synthetic clips): top-1
    #: is measured over them, so this is the n of every accuracy interval.
    n_samples: int = Field(default=64, ge=1, le=1024)
    seed: int = Field(default=0, ge=0)
    #: per_exit: one compiled graph per outport taking any input size, as a TF1 graph with an any-size
    #: input placeholder fetched at one outport would be; a new size at a warm outport costs kernel
    #: creation at its first inference, not a trace. Same latency as per_setting (benchmark section 3);
    #: 12-13 MiB less resident memory with all 12 settings warm, 7-8 MiB more when only three settings
    #: at three outports are ever used (section 4).
    #: per_setting: one graph per (size, outport), each specialised to its static shape (fewer ops).
    trace: Literal["per_exit", "per_setting"] = "per_exit"
    #: Return {"pred", "correct"} per inference (one argmax on 10 floats, a few microseconds).
    record_predictions: bool = True

    @field_validator("sizes")
    @classmethod
    def _sizes_ok(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 32 <= s <= 1024 for s in v):
            raise ValueError("sizes must be between 32 and 1024 px")
        if len(set(v)) != len(v):
            raise ValueError("sizes must not repeat")
        return v

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, v: str, info: ValidationInfo) -> str:
        if "variant" in info.data:  # else the variant's own error is reported
            resolve_weights(v, info.data["variant"])
        return v

    @model_validator(mode="after")
    def _outports_ok(self) -> ApproxNetOptions:
        n = APPROXNET_VARIANTS[self.variant].n_exits
        if any(not 1 <= e <= n for e in self.outports):
            raise ValueError(f"outports of variant {self.variant!r} are 1..{n}")
        if len(set(self.outports)) != len(self.outports):
            raise ValueError("outports must not repeat")
        if self.model_file != "cache":  # an exported file must be these weights' export, before the run starts
            litert_files.resolve_model(litert_plan(self)[0][0], self.model_file)
        return self


def resolve_weights(weights: str, variant: str) -> Path | None:
    """Path of ApproxNet's weights file to load (None for "random")."""
    return weights_file(weights, WEIGHTS_DIR / f"{variant}.npz", "approxnet", variant)


class ApproxNetWorkload(Workload):
    kind = "approxnet"
    summary = "multi-exit, any-input-size ResNet with SPP outports (TensorFlow); settings = input size x outport"
    Options = ApproxNetOptions
    requires = ("tensorflow",)
    extra = "approxnet"

    def __init__(self, options: ApproxNetOptions) -> None:
        super().__init__(options)
        self.options: ApproxNetOptions = options
        self.net: ServingNet | None = None
        self.lite: LiteModel | None = None  # runtime litert: the exported file's interpreters
        self._fn: Any = None  # the TF concrete function serving the current setting
        self._size: int | None = None
        self._frames: np.ndarray | None = None  # uint8 [n, H, W, 3]
        self._labels: list[int] = []
        self._samples: dict[int, list[tuple[Any, int]]] = {}  # size -> (input tensor, label) per frame
        self._meta: dict[str, Any] = {}

    # -- cheap ---------------------------------------------------------------
    def settings(self) -> list[str]:
        return setting_grid(self.options.sizes, self.options.outports)

    def presets(self) -> dict[str, str]:
        return presets_for(self.options.sizes, self.options.outports)

    # -- heavy ---------------------------------------------------------------
    def load(self) -> None:
        if self.options.runtime == "litert":
            self._load_litert()
            return
        from workloads.nn.data import sample_frames
        from workloads.nn.tfstart import start_tensorflow, warm_runtime

        tf_facts, t_import = start_tensorflow(self.options.intra_op_threads, self.options.inter_op_threads)
        framework_mb = warm_runtime()
        t1 = time.perf_counter()
        self.net, weights_meta, path = load_net(self.options.weights, self.options.variant, self.options.seed)
        t_weights = time.perf_counter() - t1
        self._frames, self._labels = sample_frames(self.options.seed, self.options.n_samples)
        self._meta = {
            **tf_facts,
            "framework_rss_mb": round(framework_mb, 1),  # RSS with TF's runtime warm and no model: the floor
            "load_phases_s": {"import_tf": round(t_import, 3), "weights": round(t_weights, 3)},
            **weights_info(self.net, weights_meta, path),
        }

    def _load_litert(self) -> None:
        """Serve the exported LiteRT file (exported first, in a subprocess, if the cache lacks it or it is stale)."""
        from workloads.nn.litert_serving import LiteModel, warm_runtime

        (req, _, _), = litert_plan(self.options)  # fmt: skip
        t0 = time.perf_counter()
        (path,), rebuilt = litert_files.ensure_bundle("approxnet", self.options, [req], sorted(self.options.sizes))
        t_export = time.perf_counter() - t0
        framework_mb = warm_runtime(self.options.intra_op_threads)
        t1 = time.perf_counter()
        self.lite = LiteModel(path, self.options.intra_op_threads)
        t_model = time.perf_counter() - t1
        self._meta = {
            "runtime": litert_files.runtime_facts(self.lite.facts, [path], self.options.intra_op_threads, rebuilt),
            "framework_rss_mb": round(framework_mb, 1),  # RSS with LiteRT warm on a tiny model: the floor
            "load_phases_s": {"export": round(t_export, 3), "model": round(t_model, 3)},
            **litert_files.exported_weights_info(path),
        }

    def select(self, setting: str) -> None:
        self._fn = self.served_function(setting)
        self._size = parse_setting(self.resolve(setting))[0]

    def served_function(self, setting: str) -> Any:
        """The function that serves ``setting`` (traced or allocated on first request): what ``infer()`` calls."""
        size, exit_number = parse_setting(self.resolve(setting))
        if self.lite is not None:
            return self.lite.function(size, exit_number)
        if self.net is None:
            raise RuntimeError("load() the workload before selecting a setting")
        return self.net.function(None if self.options.trace == "per_exit" else size, exit_number)

    def samples(self) -> Sequence[Any]:
        if self._size is None:
            raise RuntimeError("select() a setting before asking for samples")
        cached = self._samples.get(self._size)
        if cached is None:
            if self.lite is not None:
                cached = litert_files.load_inputs(self.options.seed, self.options.n_samples, self._size)
            elif self._frames is not None:
                from workloads.nn.serving import prepare_samples

                cached = prepare_samples(self._frames, self._labels, self._size)
            else:
                raise RuntimeError("load() the workload before asking for samples")
            self._samples[self._size] = cached
        return cached

    def infer(self, sample: Any) -> Mapping[str, Any] | None:
        logits = self._fn(sample[0])
        if not self.options.record_predictions:
            return None
        pred = int((logits if self.lite is not None else logits.numpy()).argmax())
        return {"pred": pred, "correct": pred == sample[1]}

    def close(self) -> None:
        self._fn = None
        self._samples.clear()
        self.net = None
        self.lite = None

    def metadata(self) -> dict[str, Any]:
        return {
            "variant": self.options.variant,
            "trace": self.options.trace,
            "settings": self.settings(),
            "presets": self.presets(),
            "samples": {
                "source": "synthetic clips, split 'samples' (never trained on)",
                "n": self.options.n_samples,
                "seed": self.options.seed,
                "preprocessing": "resize + normalise outside the timed region",
            },
            **self._meta,
        }

    # -- for tests and benchmarks -----------------------------------------------
    def input_bytes(self) -> int:
        """Bytes held by prepared input tensors (so memory reports can separate inputs from the model)."""
        return sum(int(getattr(x, "nbytes", 0) or x.numpy().nbytes) for per in self._samples.values() for x, _ in per)

    @property
    def trace_count(self) -> int:
        """How many graphs have been traced in this process (revisits must not add any)."""
        return 0 if self.net is None else int(self.net.trace_count)


def litert_plan(options: ApproxNetOptions) -> list[tuple[litert_files.ModelRequest, dict[str, tuple[int, int | None]],
                                                       dict[str, tuple[str, int, int]]]]:  # fmt: skip
    """The LiteRT file ApproxNet serves from: (request, signatures, settings checked at export).

    One file, a signature per outport (``exit<k>``) taking [1, any, any, 3]; every setting of the
    options' grid is checked against TensorFlow when it is exported.
    """
    spec = APPROXNET_VARIANTS[options.variant]
    identity = litert_files.weights_identity(resolve_weights(options.weights, options.variant), options.seed)
    req = litert_files.ModelRequest("approxnet", "approxnet", spec.name, identity, options.quantize)
    signatures: dict[str, tuple[int, int | None]] = {f"exit{e}": (e, None) for e in range(1, spec.n_exits + 1)}
    settings = {setting_name(s, e): (f"exit{e}", e, s) for s in sorted(options.sizes) for e in sorted(options.outports)}
    return [(req, signatures, settings)]


def load_net(weights: str, variant: str, seed: int) -> tuple[ServingNet, dict[str, Any], Path | None]:
    """(ServingNet, weights meta, path) for a weights option; "random" gives a deterministic untrained net."""
    from workloads.nn.serving import build_net

    path = resolve_weights(weights, variant)
    net, meta = build_net(path, APPROXNET_VARIANTS[variant], seed)
    return net, meta, path


def weights_info(net: ServingNet, meta: Mapping[str, Any], path: Path | None) -> dict[str, Any]:
    """Model facts for the manifest: parameters, file, and the held-out accuracy from training, if known."""
    import json

    info: dict[str, Any] = {
        "network": net.spec.name,
        "parameters": net.param_count(),
        "weights_file": str(path) if path else "random",
    }
    if path is not None:
        info["weights_sha256"] = file_sha256(path)
        report = path.with_suffix(".json")
        if report.is_file():
            info["heldout_top1"] = json.loads(report.read_text()).get("top1")
    info["weights_meta"] = dict(meta)
    return info
