"""Network shapes and setting names, without TensorFlow (``bubbleup list`` imports this).

A network is a ResNet-style stack of basic residual blocks grouped in stages; an
*outport* (exit) sits after some stages and ends in a pooling head and a small
classifier. ApproxNet has several outports with spatial-pyramid-pooling heads, so it
accepts any input size; MCDNN's models are conventional single-exit ResNets.

A *setting* of ApproxNet is one (input size, outport) pair, named ``"<size>px/exit<k>"``
with ``k`` counted from 1 at the shallowest outport, e.g. ``"160px/exit2"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

#: Preset names, from low latency / low accuracy to high latency / high accuracy.
PRESET_NAMES: tuple[str, ...] = ("LL", "MM", "HH")
DEFAULT_SIZES: tuple[int, ...] = (128, 160, 192, 224)

_SETTING_RE = re.compile(r"^(\d+)px/exit(\d+)$")


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

_APPROXNET_DEFAULT = NetSpec(
    widths=(24, 48, 64, 96),
    blocks=(2, 3, 4, 2),
    stem_width=24,
    exits=(1, 2, 3),
    num_classes=10,
    name="approxnet-default",
)

#: ApproxNet variants. "default": ResNet-18-like depth (2, 3, 4, 2 blocks), narrow, high resolution
#: (no stem pool) so 224 px at the last exit costs ~12 ms on 2 cores and the weights stay ~1.4 MB;
#: "wide": the same network 4x as wide, 11.9 M parameters like ResNet-18 (11.7 M), the scale at
#: which the paper's memory comparison lives (untrained: ``weights: random``, memory and latency
#: do not depend on the values); "tiny": for tests (trains in seconds).
APPROXNET_VARIANTS: dict[str, NetSpec] = {
    "default": _APPROXNET_DEFAULT,
    "wide": widened(_APPROXNET_DEFAULT, WIDE_FACTOR, "approxnet-wide"),
    "tiny": NetSpec(
        widths=(16, 24, 32, 48),
        blocks=(1, 1, 1, 1),
        stem_width=16,
        exits=(1, 2, 3),
        num_classes=10,
        name="approxnet-tiny",
    ),
}


def setting_name(size: int, exit_number: int) -> str:
    """Canonical name of the setting (size, 1-based outport number)."""
    return f"{size}px/exit{exit_number}"


def parse_setting(name: str) -> tuple[int, int]:
    """(size, 1-based outport number) of a canonical setting name; ValueError if malformed."""
    m = _SETTING_RE.match(name)
    if not m:
        raise ValueError(f"not an ApproxNet setting name (want e.g. '160px/exit2'): {name!r}")
    return int(m.group(1)), int(m.group(2))


def setting_grid(sizes: tuple[int, ...], outports: tuple[int, ...]) -> list[str]:
    """Every (size, outport) pair, cheapest first: by size, then by depth."""
    return [setting_name(s, e) for s in sorted(sizes) for e in sorted(outports)]


def presets_for(sizes: tuple[int, ...], outports: tuple[int, ...]) -> dict[str, str]:
    """LL: smallest input, shallowest exit; MM: a middle size and exit; HH: largest input, deepest exit."""
    s, e = sorted(sizes), sorted(outports)
    return {
        "LL": setting_name(s[0], e[0]),
        "MM": setting_name(s[(len(s) - 1) // 2], e[(len(e) - 1) // 2]),
        "HH": setting_name(s[-1], e[-1]),
    }
