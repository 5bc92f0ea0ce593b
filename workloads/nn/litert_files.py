"""Exported LiteRT models on disk: where they live, which weights they were made from, and making them.

Standard library only: scenario validation and the serving worker import this, and neither may
import TensorFlow. A LiteRT *bundle* is what one workload configuration serves: one ``.tflite`` file
per model (ApproxNet: one file with a signature per outport, any input size; MCDNN: one file per
model at its input size), each with a JSON sidecar, plus the prepared inputs (the same frames,
resized and normalised by the TensorFlow path's own preprocessing, so both runtimes see identical
tensors). The sidecar names the weights' sha256, the quantisation, the converter's version and the
model file's own sha256: a file whose weights or bytes differ is stale (rebuilt in the cache) or
foreign (an explicit path: refused). Bundles are made by ``python -m bubbleup export`` in a
subprocess, so the serving process never loads TensorFlow for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.lifetime import tied_to_this_process

#: Bump when the export changes what a file holds (graph, signatures, inputs): old caches are then stale.
EXPORT_FORMAT = 1
CACHE_ENV = "BUBBLEUP_CACHE_DIR"
QUANTIZE = ("none", "float16", "int8")


class ExportError(ValueError):
    """An exported model that cannot be served as asked (foreign, stale at an explicit path, failed export)."""


def cache_dir() -> Path:
    """``$BUBBLEUP_CACHE_DIR``, else ``$XDG_CACHE_HOME/bubbleup``, else ``~/.cache/bubbleup``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bubbleup"


def litert_wheel_exists() -> bool:
    """Whether ai-edge-litert publishes a wheel for this platform (the ``litert`` extra's markers say the same)."""
    return sys.platform in ("linux", "darwin") and platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")


def weights_identity(path: Path | None, seed: int) -> str:
    """What the exported file must have been made from: the weights file's sha256, or the random init's seed."""
    if path is None:
        return f"random:seed={seed}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class ModelRequest:
    """One model file a bundle needs: which network, made from which weights, quantised how."""

    kind: str  # workload kind whose export makes it: "approxnet" or "mcdnn"
    model: str  # "approxnet" or the MCDNN model ("small" / "full")
    network: str  # NetSpec name, e.g. "approxnet-default"
    weights: str  # weights_identity()
    quantize: str

    def stem(self) -> str:
        key = hashlib.sha256(json.dumps([EXPORT_FORMAT, self.network, self.weights, self.quantize]).encode())
        return f"{self.network}-{self.quantize}-{key.hexdigest()[:16]}"


def model_path(req: ModelRequest, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "litert" / f"{req.stem()}.tflite"


def inputs_path(seed: int, n: int, size: int, root: Path | None = None) -> Path:
    """Prepared inputs of ``n`` sample frames (seed) at ``size`` px: float32 [n, size, size, 3] and labels."""
    return (root or cache_dir()) / "litert" / "inputs" / f"v{EXPORT_FORMAT}-seed{seed}-n{n}-{size}px.npz"


def probe_path(root: Path | None = None) -> Path:
    """A tiny model of the networks' op kinds: run once, it puts the runtime's first-use state in RSS (the floor)."""
    return (root or cache_dir()) / "litert" / f"probe-v{EXPORT_FORMAT}.tflite"


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(sidecar(path).read_text()))
    except (OSError, ValueError):
        return None


def why_unfit(path: Path, req: ModelRequest) -> str | None:
    """Why the model file at ``path`` is not the one ``req`` asks for (None: it is)."""
    if not path.is_file():
        return f"{path} does not exist"
    meta = read_sidecar(path)
    if meta is None:
        return f"{path} has no readable sidecar {sidecar(path).name} (not a bubbleup export)"
    if meta.get("format") != EXPORT_FORMAT:
        return f"{path} is export format {meta.get('format')}, this bubbleup makes {EXPORT_FORMAT}"
    for field in ("network", "weights", "quantize"):
        if meta.get(field) != getattr(req, field):
            return f"{path} was made from {field} {meta.get(field)!r}, not {getattr(req, field)!r}"
    if meta.get("model_sha256") != file_sha256(path):
        return f"{path} does not match the sha256 its sidecar records (changed after export)"
    return None


def resolve_model(req: ModelRequest, explicit: str) -> tuple[Path, str | None]:
    """(file to serve, why it must be (re)built or None); an explicit path that is unfit raises ExportError."""
    if explicit != "cache":
        path = Path(explicit).expanduser()
        why = why_unfit(path, req)
        if why is not None:
            raise ExportError(f"refusing to serve {req.model} from model_file: {why}; export it again or use 'cache'")
        return path, None
    path = model_path(req)
    return path, why_unfit(path, req)


def export_in_subprocess(kind: str, options: Mapping[str, Any]) -> None:
    """Run ``python -m bubbleup export KIND --runtime litert --options JSON`` (TensorFlow stays in that process)."""
    argv = [sys.executable, "-m", "bubbleup", "export", kind, "--runtime", "litert",
            "--options", json.dumps(dict(options), sort_keys=True)]  # fmt: skip
    # tied to this worker: an orchestrator killed mid-export took the worker, and left the conversion running
    done = subprocess.run(argv, capture_output=True, text=True, check=False, preexec_fn=tied_to_this_process())
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise ExportError(f"exporting {kind} to LiteRT failed: {tail}")


def ensure_bundle(kind: str, options: Any, reqs: list[ModelRequest], sizes: list[int]) -> tuple[list[Path], str | None]:
    """The model files to serve for ``reqs`` (exported now if missing or stale) and why they were rebuilt, if so.

    ``options`` is the workload's options model: the export subprocess is given exactly them, so it
    builds the same networks from the same weights the serving process asked for.
    """
    explicit = getattr(options, "model_file", "cache")
    resolved = [resolve_model(req, explicit if len(reqs) == 1 else "cache") for req in reqs]
    whys = [why for _, why in resolved if why]
    seed, n = options.seed, options.n_samples
    missing_inputs = [size for size in sizes if not inputs_path(seed, n, size).is_file()]
    if missing_inputs:
        whys.append(f"no prepared inputs at {', '.join(f'{s}px' for s in missing_inputs)}")
    if not probe_path().is_file():
        whys.append("no framework probe model")
    if not whys:
        return [path for path, _ in resolved], None
    export_in_subprocess(kind, options.model_dump(mode="json", exclude={"intra_op_threads", "inter_op_threads"}))
    paths = []
    for req in reqs:
        path, why = resolve_model(req, explicit if len(reqs) == 1 else "cache")
        if why is not None:
            raise ExportError(f"the export did not leave a servable {req.model} model: {why}")
        paths.append(path)
    return paths, "; ".join(whys)


def runtime_facts(
    interpreter: Mapping[str, Any], paths: list[Path], threads: int, rebuilt: str | None
) -> dict[str, Any]:
    """The manifest's ``runtime`` record of a LiteRT-served workload."""
    models = {}
    for path in paths:
        meta = read_sidecar(path) or {}
        agreement = [c["top1_agreement"] for c in meta.get("check", {}).get("settings", {}).values()]
        models[meta.get("model", path.stem)] = {
            "file": str(path),
            "sha256": meta.get("model_sha256"),
            "bytes": meta.get("bytes"),
            "quantize": meta.get("quantize"),
            "converter": meta.get("converter"),
            "heldout_top1_agreement_min": min(agreement) if agreement else None,
        }
    return {
        "name": "litert",
        **dict(interpreter),
        "delegate": "XNNPACK (CPU, the interpreter's default)",
        "threads": threads,
        "models": models,
        "exported_now": rebuilt,  # None: served from files already exported
    }


def exported_weights_info(path: Path) -> dict[str, Any]:
    """The weights facts (as the TF path records them) of an exported file, from its sidecar."""
    meta = read_sidecar(path) or {}
    weights = meta.get("weights", "")
    info: dict[str, Any] = {"network": meta.get("network"), "parameters": meta.get("parameters"),
                            "weights_file": meta.get("weights_file", "random")}  # fmt: skip
    if not str(weights).startswith("random:"):
        info["weights_sha256"] = weights
    if meta.get("heldout_top1") is not None:
        info["heldout_top1"] = meta["heldout_top1"]
    return info


def load_inputs(seed: int, n: int, size: int) -> list[tuple[Any, int]]:
    """(input [1, size, size, 3] float32, label) per frame, as the export prepared them."""
    import numpy as np

    with np.load(inputs_path(seed, n, size)) as z:
        x, labels = z["inputs"], z["labels"]
    return [(np.ascontiguousarray(x[i : i + 1]), int(labels[i])) for i in range(len(labels))]
