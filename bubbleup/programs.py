"""Whether a program can be started here: asked when a scenario is read (a command bubble) and again by the
co-runner shim, so a missing program is said once, in words, before anything runs. Starts nothing."""

from __future__ import annotations

import shutil
from collections.abc import Sequence


def not_a_program(argv: Sequence[str]) -> str | None:
    """Why ``argv`` cannot be started here (said when a scenario is read, not after every step failed), or None."""
    if not argv:
        return "no program given"
    if shutil.which(argv[0]) is None:
        return f"{argv[0]!r} is not a program here (not on PATH, not a file)"
    return None
