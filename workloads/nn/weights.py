"""Weights files on disk: which file a workload's weights option names, and file hashes.

Standard library only (option validators call ``weights_file`` when a scenario is read, and
that must not import TensorFlow or numpy). The file format itself (``.npz`` of folded
parameters) is written and read by ``serving.save_params`` / ``serving.load_params``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


class MissingWeightsError(FileNotFoundError, ValueError):
    """A weights file that is not there: a ValueError too, so option validation reports it as one line."""


def weights_file(option: str, shipped: Path, kind: str, variant: str, what: str = "") -> Path | None:
    """The file a weights option names (None for "random"), for ApproxNet and MCDNN alike.

    ``option`` is "random", "default" (``shipped``, where ``train`` writes the variant's weights)
    or a path; a missing file raises MissingWeightsError saying how to make it.
    """
    if option == "random":
        return None
    path = shipped if option == "default" else Path(option).expanduser()
    if not path.is_file():
        train = f"python -m bubbleup train {kind} --variant {variant}" + ("" if option == "default" else f" -o {path}")
        missing = (
            f"no trained weights for variant {variant!r} ({path})" if option == "default" else f"no such file: {path}"
        )
        raise MissingWeightsError(
            f'{what}{missing}; use "random" (untrained: latency and memory, not accuracy) or train them: {train}'
        )
    return path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (recorded with every weights file a run loads or training writes)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
