"""MCDNN's two models (Han et al., MobiSys 2016), without TensorFlow.

MCDNN answers with a cascade: a small model *specialised* on the classes that dominate
the current stream (the top-K of the deployment prior) plus an "other" class, and the
full model when the small one says "other" or is not confident. Unlike ApproxNet, these
are conventional networks: one exit, global max pooling, a fixed input size each. The
full model is wider than ApproxNet (it is a stand-alone, full-size network, not a shared
backbone), so keeping both resident costs clearly more memory than one ApproxNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workloads.nn import data
from workloads.nn.netspec import WIDE_FACTOR, NetSpec, widened

#: How many of the most frequent classes the small model specialises on.
TOP_K = 4


def top_classes(k: int = TOP_K) -> tuple[int, ...]:
    """The ``k`` most frequent classes of the deployment prior, most frequent first."""
    order = sorted(range(data.NUM_CLASSES), key=lambda c: (-data.DEPLOY_PRIOR[c], c))
    return tuple(order[:k])


@dataclass(frozen=True)
class ModelPair:
    small: NetSpec
    full: NetSpec
    small_size: int
    full_size: int


_DEFAULT_PAIR = ModelPair(
    small=NetSpec(
        widths=(16, 32, 48, 64),
        blocks=(1, 1, 1, 1),
        stem_width=16,
        exits=(3,),
        num_classes=TOP_K + 1,
        spp_bins=(1,),
        name="mcdnn-small",
    ),
    full=NetSpec(
        widths=(32, 64, 128, 192),
        blocks=(2, 2, 2, 2),
        stem_width=32,
        exits=(3,),
        num_classes=data.NUM_CLASSES,
        spp_bins=(1,),
        stem_pool=True,
        name="mcdnn-full",
    ),
    small_size=160,
    full_size=224,
)

#: "default": trained, shipped; "wide": both models 4x as wide (untrained, ``random`` weights), the
#: scale of the paper's networks (full: 31 M parameters, ResNet-50 has 25.6 M); "tiny": tests.
VARIANTS: dict[str, ModelPair] = {
    "default": _DEFAULT_PAIR,
    "wide": ModelPair(
        small=widened(_DEFAULT_PAIR.small, WIDE_FACTOR, "mcdnn-small-wide"),
        full=widened(_DEFAULT_PAIR.full, WIDE_FACTOR, "mcdnn-full-wide"),
        small_size=_DEFAULT_PAIR.small_size,
        full_size=_DEFAULT_PAIR.full_size,
    ),
    "tiny": ModelPair(
        small=NetSpec(
            widths=(8, 16, 24, 32),
            blocks=(1, 1, 1, 1),
            stem_width=8,
            exits=(3,),
            num_classes=TOP_K + 1,
            spp_bins=(1,),
            stem_pool=True,
            name="mcdnn-small-tiny",
        ),
        full=NetSpec(
            widths=(8, 16, 24, 32),
            blocks=(1, 1, 1, 1),
            stem_width=8,
            exits=(3,),
            num_classes=data.NUM_CLASSES,
            spp_bins=(1,),
            stem_pool=True,
            name="mcdnn-full-tiny",
        ),
        small_size=64,
        full_size=96,
    ),
}

#: Settings: which model(s) answer. The memory mode (all / replace) is an option, not a setting.
SETTINGS: tuple[str, ...] = ("small", "cascade", "full")
#: Presets line up with ApproxNet's by cost: the small model alone, the cascade, the full model alone.
PRESETS: dict[str, str] = {"LL": "small", "MM": "cascade", "HH": "full"}


def relabel_for_small(labels: np.ndarray) -> np.ndarray:
    """Original class -> small-model output: its rank among the top-K classes, or K for "other"."""
    lut = np.full(data.NUM_CLASSES, TOP_K, np.int32)
    for rank, c in enumerate(top_classes()):
        lut[c] = rank
    return lut[labels]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def small_answers(small_logits: np.ndarray, threshold: float, classes: tuple[int, ...]) -> np.ndarray:
    """Per row, the class the small model answers with, or -1 where the cascade must fall back.

    The small model falls back when its best guess is "other" (the last output) or when its
    softmax confidence is below ``threshold``.
    """
    probs = softmax(np.atleast_2d(np.asarray(small_logits, np.float64)))
    best = probs.argmax(axis=1)
    confident = probs[np.arange(len(best)), best] >= threshold
    mapped = np.array([classes[b] if b < len(classes) else -1 for b in best])
    return np.where(confident & (best < len(classes)), mapped, -1)
