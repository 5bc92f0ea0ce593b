"""The Keras training twin of a ``NetSpec`` network, and its export to folded serving parameters.

Training uses conv + batch-norm + dropout (what makes small nets train fast and well);
``export_params`` folds each batch norm into its convolution and drops everything
that exists only for training, giving exactly the parameters ``serving.ServingNet`` runs.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from workloads.nn.netspec import NetSpec
from workloads.nn.serving import block_layout, exit_after_block, spp

BN_EPSILON = 1e-3


class ConvBN(layers.Layer):
    """Conv (no bias) + batch norm (+ ReLU); folds into one biased conv for serving."""

    def __init__(self, filters: int, kernel: int, stride: int, relu: bool, **kw: object) -> None:
        super().__init__(**kw)
        self.conv = layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
        )
        self.bn = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9)
        self.relu = relu

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        y = self.bn(self.conv(x), training=training)
        return tf.nn.relu(y) if self.relu else y

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(kernel, bias) of the equivalent inference-mode conv."""
        w = np.asarray(self.conv.kernel)
        gamma, beta = np.asarray(self.bn.gamma), np.asarray(self.bn.beta)
        mean, var = np.asarray(self.bn.moving_mean), np.asarray(self.bn.moving_variance)
        scale = gamma / np.sqrt(var + BN_EPSILON)
        return (w * scale).astype(np.float32), (beta - mean * scale).astype(np.float32)


class Block(layers.Layer):
    def __init__(self, cout: int, stride: int, proj: bool, **kw: object) -> None:
        super().__init__(**kw)
        self.conv1 = ConvBN(cout, 3, stride, True)
        self.conv2 = ConvBN(cout, 3, 1, False)
        self.proj = ConvBN(cout, 1, stride, False) if proj else None

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        y = self.conv2(self.conv1(x, training=training), training=training)
        shortcut = self.proj(x, training=training) if self.proj is not None else x
        return tf.nn.relu(y + shortcut)


def level_scale(spec: NetSpec, channels: int) -> np.ndarray:
    """Per-feature factor giving every pyramid level the same total variance after normalisation.

    An n x n level has n*n times the features of the 1 x 1 level; unscaled, the position-specific
    fine levels drown the position-invariant coarse one at initialisation and learning is slow
    (measured: about half the held-out accuracy after the same number of steps). Scaling each
    bin by 1/n evens the levels out; it is a constant, folded into the first dense layer at export.
    """
    if spec.head != "spp":
        return np.ones(channels, np.float32)
    return np.concatenate([np.full(n * n * channels, 1.0 / n, np.float32) for n in spec.spp_bins])


class Head(layers.Layer):
    """Outport: SPP (any input size) or global average pooling, then a small classifier."""

    def __init__(self, spec: NetSpec, channels: int, dropout: float, **kw: object) -> None:
        super().__init__(**kw)
        self.spec = spec
        self.scale_np = level_scale(spec, channels)
        # Pooled features of different depths differ in scale by orders of magnitude; a batch norm
        # in front of the classifier keeps every outport trainable at one learning rate (and folds away).
        self.norm = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9)
        self.fc1 = layers.Dense(spec.head_hidden) if spec.head_hidden else None
        self.level_scale = tf.constant(self.scale_np)
        self.drop = layers.Dropout(dropout)
        self.fc2 = layers.Dense(spec.num_classes)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        h = spp(x, self.spec.spp_bins) if self.spec.head == "spp" else tf.reduce_mean(x, axis=[1, 2])
        h = self.norm(h, training=training) * self.level_scale
        if self.fc1 is not None:
            h = tf.nn.relu(self.fc1(h))
        return self.fc2(self.drop(h, training=training))

    def folded(self) -> dict[str, np.ndarray]:
        """fc1/fc2 kernels and biases with the input batch norm folded into the first dense layer."""
        gamma, beta = np.asarray(self.norm.gamma), np.asarray(self.norm.beta)
        mean, var = np.asarray(self.norm.moving_mean), np.asarray(self.norm.moving_variance)
        scale = gamma / np.sqrt(var + BN_EPSILON)
        shift = beta - mean * scale
        scale, shift = scale * self.scale_np, shift * self.scale_np
        first = self.fc1 if self.fc1 is not None else self.fc2
        w, b = np.asarray(first.kernel), np.asarray(first.bias)
        out = {"w": (w * scale[:, None]).astype(np.float32), "b": (b + shift @ w).astype(np.float32)}
        if self.fc1 is None:
            return {"fc2/w": out["w"], "fc2/b": out["b"]}
        return {
            "fc1/w": out["w"],
            "fc1/b": out["b"],
            "fc2/w": np.asarray(self.fc2.kernel),
            "fc2/b": np.asarray(self.fc2.bias),
        }


class TrainNet(keras.Model):
    """Backbone + outports. ``call`` returns the logits of every outport (a list, shallow first)."""

    def __init__(self, spec: NetSpec, dropout: float = 0.0, **kw: object) -> None:
        super().__init__(**kw)
        self.spec = spec
        self.stem = ConvBN(spec.stem_width, 3, 2, True)
        self.layout = block_layout(spec)
        self.blocks_ = [Block(b["cout"], b["stride"], b["proj"], name=b["name"]) for b in self.layout]
        self.exit_blocks = exit_after_block(spec)
        self.heads = [
            Head(spec, spec.widths[stage], dropout, name=f"exit{k + 1}") for k, stage in enumerate(spec.exits)
        ]

    def features(self, x: tf.Tensor, training: bool = False) -> list[tf.Tensor]:
        """Backbone feature maps at every outport."""
        x = self.stem(x, training=training)
        if self.spec.stem_pool:
            x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        feats = []
        for i, blk in enumerate(self.blocks_):
            x = blk(x, training=training)
            if i + 1 in self.exit_blocks:
                feats.append(x)
        return feats

    def call(self, x: tf.Tensor, training: bool = False) -> list[tf.Tensor]:
        feats = self.features(x, training=training)
        return [head(f, training=training) for head, f in zip(self.heads, feats, strict=True)]

    def build_all(self, size: int = 64) -> None:
        """Create every weight by one call on a dummy batch."""
        self(tf.zeros([1, size, size, 3]), training=False)

    def backbone_variables(self) -> list[tf.Variable]:
        out = list(self.stem.trainable_variables)
        for blk in self.blocks_:
            out.extend(blk.trainable_variables)
        return out

    def head_variables(self, exits: list[int] | None = None) -> list[tf.Variable]:
        """Trainable variables of the given outports (1-based; all by default)."""
        chosen = exits or list(range(1, self.spec.n_exits + 1))
        return [v for k in chosen for v in self.heads[k - 1].trainable_variables]

    def export_params(self) -> dict[str, np.ndarray]:
        """Folded inference parameters, named as ``serving.param_shapes`` expects."""
        params: dict[str, np.ndarray] = {}
        params["stem/w"], params["stem/b"] = self.stem.folded()
        for meta, blk in zip(self.layout, self.blocks_, strict=True):
            n = meta["name"]
            params[f"{n}/conv1/w"], params[f"{n}/conv1/b"] = blk.conv1.folded()
            params[f"{n}/conv2/w"], params[f"{n}/conv2/b"] = blk.conv2.folded()
            if blk.proj is not None:
                params[f"{n}/proj/w"], params[f"{n}/proj/b"] = blk.proj.folded()
        for k, head in enumerate(self.heads, start=1):
            for name, value in head.folded().items():
                params[f"exit{k}/{name}"] = value
        return params
