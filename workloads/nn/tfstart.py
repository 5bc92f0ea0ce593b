"""TensorFlow process settings the measurements depend on: set explicitly, before any op, and recorded.

The TX2 study learned both the hard way: TensorFlow grabbed all accelerator memory
(on shared-memory boards that starves the CPU), and unrecorded thread counts make
latencies incomparable between runs and machines.
"""

from __future__ import annotations

import os
import time
from typing import Any


def configure_threads(intra_op: int, inter_op: int) -> dict[str, Any]:
    """Set TF's thread pools and GPU memory growth; returns what was effectively set.

    Must run before TensorFlow executes its first op (thread pools are fixed then); if it is
    too late, the effective values are still read back and reported, not assumed.
    """
    import tensorflow as tf

    notes: list[str] = []
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as exc:  # the runtime was already initialised by someone else
        notes.append(f"threads not set: {exc}")
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:
            notes.append(f"memory growth not set on {gpu.name}: {exc}")
    return {
        "intra_op_threads_requested": intra_op,
        "inter_op_threads_requested": inter_op,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "gpus": [g.name for g in gpus],
        "gpu_memory_growth": [bool(tf.config.experimental.get_memory_growth(g)) for g in gpus],
        "notes": notes,
    }


def versions() -> dict[str, Any]:
    """TF, Keras and numpy versions plus the environment switches that change TF's kernels."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np
    import tensorflow as tf

    try:  # read from package metadata: importing Keras would add its memory to the served process
        keras_version: str | None = version("keras")
    except PackageNotFoundError:
        keras_version = None
    return {
        "tensorflow": tf.__version__,
        "keras": keras_version,
        "numpy": np.__version__,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on by default on x86)"),
        "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS"),
        "tf_built_with_cuda": bool(tf.test.is_built_with_cuda()),
    }


def quiet_tf_logs() -> None:
    """Keep TF's C++ start-up chatter off stderr unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def start_tensorflow(intra_op: int, inter_op: int) -> tuple[dict[str, Any], float]:
    """Import TensorFlow and fix its threads before any op, as every TF workload's ``load()`` must.

    Returns the facts for the run's metadata (``tf_config``, ``versions``) and the seconds the import
    took, timed on its own: importing TF is a large cost separate from loading any model.
    """
    quiet_tf_logs()
    t0 = time.perf_counter()
    import tensorflow  # noqa: F401

    import_s = time.perf_counter() - t0
    config, found = configure_threads(intra_op, inter_op), versions()
    runtime = {"name": "tensorflow", "version": found["tensorflow"], "threads": config["intra_op_threads"]}
    return {"tf_config": config, "versions": found, "runtime": runtime}, import_s


def warm_runtime() -> float:
    """Run one small compiled graph of the op kinds the networks use, and return this process's RSS (MiB).

    What every TF configuration holds besides its model (the runtime's first-use state, the kernels'
    code): the *framework floor* that the memory figures measure each configuration's growth over, as the
    TX2 study's Figure 3.1 compares models, not TensorFlows. The workloads call it before loading weights.
    """
    import psutil
    import tensorflow as tf

    w = tf.ones([3, 3, 3, 8])

    @tf.function
    def probe(x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 2, "SAME"), tf.zeros([8])))
        y = tf.nn.max_pool2d(y, 3, 2, "SAME")
        return tf.matmul(tf.reduce_max(y, axis=[1, 2]), tf.ones([8, 10]))

    probe(tf.ones([1, 64, 64, 3])).numpy()
    return float(psutil.Process().memory_info().rss) / (1 << 20)
