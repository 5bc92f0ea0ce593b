"""Nested JSON-like data (dicts, lists) walked two at a time: the one pair-walk behind every "what became of each
value" and "what differs from what was recorded" check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def leaf_pairs(a: Any, b: Any, path: str = "", item: str = "{}.{}") -> Iterator[tuple[str, Any, Any]]:
    """Each leaf of ``a`` beside the value at the same place in ``b`` (None where ``b`` has nothing there), with
    its dotted path. Dicts are walked by ``a``'s keys, sequences of one length item by item (``item`` formats the
    path of item ``i``: ``x.0`` as pydantic writes it, or ``x[0]``); anything else, two sequences of different
    lengths included, is a leaf."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key, value in a.items():
            yield from leaf_pairs(value, b.get(key), f"{path}.{key}" if path else str(key), item)
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from leaf_pairs(x, y, item.format(path, i), item)
    else:
        yield path, a, b
