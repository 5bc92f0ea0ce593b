"""Network shapes, without TensorFlow (``bubbleup list`` imports this).

A network is a ResNet-style stack of basic residual blocks grouped in stages; an
*outport* (exit) sits after some stages and ends in a pooling head and a small
classifier. ApproxNet has several outports with spatial-pyramid-pooling heads, so it
accepts any input size; MCDNN's models are conventional single-exit ResNets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal


@dataclass(frozen=True)
class NetSpec:
    """Shape of a residual network with one or more outports.

    ``exits`` are stage indices (0-based) after which an outport sits; the last one is the
    full-depth output. Head ``spp`` max-pools to each grid in ``spp_bins`` (any input size);
    ``gap`` is the conventional global average pooling of a fixed-input ResNet.
    """

    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    stem_width: int
    exits: tuple[int, ...]
    num_classes: int
    head: Literal["spp", "gap"] = "spp"
    spp_bins: tuple[int, ...] = (1, 2, 4)
    #: Hidden units of each outport's classifier (0: a single linear layer, which trained fastest here).
    head_hidden: int = 0
    #: Max-pool 3x3/2 after the stride-2 stem, as in ResNet (False keeps 2x more resolution).
    stem_pool: bool = False
    name: str = field(default="net", compare=False)

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ValueError("widths and blocks need one entry per stage")
        if not self.exits or list(self.exits) != sorted(set(self.exits)) or self.exits[-1] >= len(self.widths):
            raise ValueError(f"exits must be increasing stage indices below {len(self.widths)}: {self.exits}")

    @property
    def n_exits(self) -> int:
        return len(self.exits)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetSpec:
        raw: dict[str, Any] = json.loads(text)
        for key in ("widths", "blocks", "exits", "spp_bins"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def widened(spec: NetSpec, factor: int, name: str) -> NetSpec:
    """``spec`` with every layer ``factor`` times as wide (about ``factor``^2 the weights), depth unchanged."""
    return replace(
        spec,
        widths=tuple(w * factor for w in spec.widths),
        stem_width=spec.stem_width * factor,
        name=name,
    )


#: How much wider the "wide" variants of ApproxNet and MCDNN are than their trained defaults.
WIDE_FACTOR = 4
