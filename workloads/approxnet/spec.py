"""ApproxNet's network variants and setting names, without TensorFlow (``bubbleup list`` imports this).

The networks are ``NetSpec`` shapes (``workloads.nn.netspec``) with several outports, each
ending in spatial pyramid pooling, so they accept any input size.

A *setting* of ApproxNet is one (input size, outport) pair, named ``"<size>px/exit<k>"``
with ``k`` counted from 1 at the shallowest outport, e.g. ``"160px/exit2"``.
"""

from __future__ import annotations

import re

from workloads.nn.netspec import WIDE_FACTOR, NetSpec, widened

#: Preset names, from low latency / low accuracy to high latency / high accuracy.
PRESET_NAMES: tuple[str, ...] = ("LL", "MM", "HH")
DEFAULT_SIZES: tuple[int, ...] = (128, 160, 192, 224)

_SETTING_RE = re.compile(r"^(\d+)px/exit(\d+)$")


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
