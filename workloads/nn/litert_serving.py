"""Serving an exported model through the LiteRT interpreter (XNNPACK on CPU): what ``runtime: litert`` times.

No TensorFlow here unless ai-edge-litert has no wheel for the platform, in which case TensorFlow's
own ``tf.lite.Interpreter`` (the same runtime, older packaging) serves, and the facts say so.

One interpreter per input size holds every outport's signature: the first inference of a signature
at a new size pays the tensor allocation and XNNPACK's weight packing (the analogue of TensorFlow's
kernel creation, and flagged the same way, as the setting's first use); a revisit is a lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from workloads.nn import litert_files as files


def interpreter_class() -> tuple[Any, dict[str, Any]]:
    """(Interpreter class, facts for the manifest); MissingExtra where ai-edge-litert should be installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        try:
            pkg_version: str | None = version("ai-edge-litert")
        except PackageNotFoundError:
            pkg_version = None
        return Interpreter, {"package": "ai-edge-litert", "version": pkg_version}
    except ImportError:
        if files.litert_wheel_exists():
            from workloads import MissingExtra

            raise MissingExtra("runtime litert", ["ai_edge_litert"], "litert") from None
    import tensorflow as tf

    return tf.lite.Interpreter, {"package": "tensorflow (tf.lite: ai-edge-litert has no wheel here)",
                                 "version": tf.__version__}  # fmt: skip


class LiteModel:
    """An exported model file served by one interpreter per input size; ``function(size, exit)`` -> callable."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path, self.threads = path, threads
        self._cls, self.facts = interpreter_class()
        self._content = path.read_bytes()  # read once; every interpreter of this model serves the same bytes
        self._interpreters: dict[int, Any] = {}
        self._functions: dict[tuple[int, int], Callable[[np.ndarray], np.ndarray]] = {}
        self.signatures = list(self._open(0).get_signature_list())

    def _open(self, size: int) -> Any:
        it = self._interpreters.get(size)
        if it is None:
            it = self._cls(model_content=self._content, num_threads=self.threads)
            self._interpreters[size] = it
        return it

    def function(self, size: int, exit_number: int) -> Callable[[np.ndarray], np.ndarray]:
        """Logits [1, classes] of outport ``exit_number`` for one input [1, size, size, 3]; cached."""
        key = (size, exit_number)
        fn = self._functions.get(key)
        if fn is None:
            name = f"exit{exit_number}"
            if name not in self.signatures:
                raise ValueError(f"{self.path.name} has no signature {name!r} (it has {', '.join(self.signatures)})")
            runner = self._open(size).get_signature_runner(name)

            def fn(x: np.ndarray, runner: Any = runner) -> np.ndarray:
                return runner(image=x)["logits"]

            self._functions[key] = fn
        return fn


def warm_runtime(threads: int) -> float:
    """Load the interpreter package and run one tiny model: the LiteRT framework floor, RSS in MiB.

    The same role as ``tfstart.warm_runtime``: what every LiteRT configuration holds besides its
    model (the runtime's code and first-use state), so memory figures measure the model's growth.
    """
    import psutil

    cls, _ = interpreter_class()
    probe = files.probe_path()
    if probe.is_file():
        it = cls(model_content=probe.read_bytes(), num_threads=threads)
        image = it.get_input_details()[0]["index"]
        it.resize_tensor_input(image, [1, 64, 64, 3])
        it.allocate_tensors()
        it.set_tensor(image, np.ones([1, 64, 64, 3], np.float32))
        it.invoke()
    return float(psutil.Process().memory_info().rss) / (1 << 20)
