"""Training and evaluation loops shared by ApproxNet and MCDNN (TensorFlow; imported only to train).

Deterministic: one seed fixes the data stream, the initial weights and the order of
input sizes; TF op determinism is on and thread counts are fixed, so the same command
gives the same weights file on the same software stack.

Data is an endless stream of fresh synthetic clips (see ``data.py``): each "epoch" draws
new clips, so epochs count data volume, not repetitions, and nothing is memorised.

The stages here serve both workloads (``fit_main_branch``: a whole single-exit network, or a
backbone with its deepest outport); ApproxNet's second stage, every outport on a frozen
backbone, is ``fit_outports`` in ``workloads/approxnet/train.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from workloads.nn import data
from workloads.nn.netspec import NetSpec

if TYPE_CHECKING:  # imports Keras: only when training actually starts
    from workloads.nn.trainable import TrainNet


@dataclass(frozen=True)
class Schedule:
    """How much data each training stage sees."""

    epochs: int
    clips_per_epoch: int
    frames_per_clip: int = 8
    #: Clips rendered at once; their frames are shuffled together into batches.
    pool_clips: int = 64
    #: Small batches: at this data volume the number of updates, not their precision, limits learning
    #: (measured: batch 16 reached 72% where batch 32 reached 27% on the same 4,800 frames).
    batch_size: int = 16
    learning_rate: float = 1e-3

    @property
    def frames(self) -> int:
        return self.epochs * self.clips_per_epoch * self.frames_per_clip

    @property
    def steps(self) -> int:
        return max(1, self.frames // self.batch_size)


def configure_tf(seed: int, intra: int, inter: int) -> None:
    """Fixed threads, op determinism and seeds, before any op runs."""
    import keras
    import tensorflow as tf

    from workloads.nn.tfstart import configure_threads

    configure_threads(intra, inter)
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)


def batches(
    seed: int,
    sched: Schedule,
    prior: tuple[float, ...],
    relabel: Callable[[np.ndarray], np.ndarray] | None = None,
    stream_id: int = 0,
    frame_size: int = data.FRAME_SIZE,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled (frames uint8, labels) batches from pools of fresh clips, deterministic from the seed."""
    rng = np.random.default_rng([seed, 7, stream_id])
    pool_index = 0
    while True:
        pool = data.make_split(
            seed + 1000 * stream_id,
            "train",
            sched.pool_clips,
            sched.frames_per_clip,
            prior,
            size=frame_size,
            first_clip=pool_index * sched.pool_clips,
        )
        pool_index += 1
        labels = relabel(pool.labels) if relabel is not None else pool.labels
        order = rng.permutation(len(labels))
        for i in range(0, len(order) - sched.batch_size + 1, sched.batch_size):
            idx = order[i : i + sched.batch_size]
            yield pool.frames[idx], labels[idx]


def train_stage(
    variables: list[Any],
    loss_fn: Callable[[Any, Any, bool], Any],
    sched: Schedule,
    sizes: tuple[int, ...],
    stream: Iterator[tuple[np.ndarray, np.ndarray]],
    seed: int,
    label: str,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Adam with cosine decay over ``sched.steps`` multi-scale batches; returns the loss per logging window.

    ``loss_fn(images, labels, training)`` returns the scalar loss. Each batch is resized to a
    size drawn (deterministically) from ``sizes``, so the SPP network learns every input size.
    """
    import keras
    import tensorflow as tf

    from workloads.nn.serving import preprocess

    steps = sched.steps
    warm = min(50, steps // 20)
    lr = keras.optimizers.schedules.CosineDecay(
        sched.learning_rate * 0.1, steps - warm, alpha=0.02, warmup_target=sched.learning_rate, warmup_steps=warm
    )
    opt = keras.optimizers.Adam(learning_rate=lr)
    opt.build(variables)

    @tf.function(reduce_retracing=False, autograph=False)  # plain Python control flow only
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(x, y, True)
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables, strict=True))
        return loss

    rng = np.random.default_rng([seed, 11])
    history, window, t0 = [], [], time.perf_counter()
    every = max(1, steps // 10)
    for i in range(steps):
        frames, labels = next(stream)
        size = int(rng.choice(sizes))
        window.append(float(step(preprocess(frames, size), tf.constant(labels, tf.int32))))
        if (i + 1) % every == 0 or i + 1 == steps:
            history.append(float(np.mean(window)))
            log(f"  {label}: step {i + 1}/{steps}  loss {history[-1]:.3f}  ({time.perf_counter() - t0:.0f} s)")
            window = []
    return history


def print_progress(message: str) -> None:
    """The default ``log`` of the train commands: flushed, so progress shows even when stdout is a file."""
    print(message, flush=True)


def heldout(seed: int, n_clips: int, frames_per_clip: int, frame_size: int = data.FRAME_SIZE) -> data.Batch:
    """The held-out split: clips never seen in training, at the deployment class prior."""
    return data.make_split(seed, "heldout", n_clips, frames_per_clip, data.DEPLOY_PRIOR, size=frame_size)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels)) if len(labels) else math.nan


def spec_summary(spec: NetSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "widths": list(spec.widths),
        "blocks": list(spec.blocks),
        "exits": list(spec.exits),
        "head": spec.head,
    }


WEIGHT_DECAY = 5e-5


def fit_main_branch(
    net: TrainNet,
    sched: Schedule,
    sizes: tuple[int, ...],
    seed: int,
    prior: tuple[float, ...] = data.UNIFORM_PRIOR,
    relabel: Callable[[np.ndarray], np.ndarray] | None = None,
    stream_id: int = 0,
    frame_size: int = data.FRAME_SIZE,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Train the backbone and the deepest outport of a ``TrainNet`` end to end (stage 1, or a whole single-exit net)."""
    import keras
    import tensorflow as tf

    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = net.backbone_variables() + net.head_variables([net.spec.n_exits])
    kernels = [v for v in variables if "kernel" in v.path]

    def loss(x: tf.Tensor, y: tf.Tensor, training: bool) -> tf.Tensor:
        logits = net.heads[-1](net.features(x, training=training)[-1], training=training)
        return xent(y, logits) + WEIGHT_DECAY * tf.add_n([tf.nn.l2_loss(k) for k in kernels])

    stream = batches(seed, sched, prior, relabel, stream_id=stream_id, frame_size=frame_size)
    return train_stage(variables, loss, sched, sizes, stream, seed + stream_id, "backbone", log)
