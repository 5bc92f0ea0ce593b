"""What the user sees while a sweep runs: a progress bar on a terminal, one line per point otherwise."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from tqdm import tqdm


class Progress:
    """A progress bar on a terminal, one line per point otherwise (CI logs)."""

    def __init__(self, total_steps: int, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar: tqdm[NoReturn] | None = None  # a bar without an iterable is updated by hand
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True, file=sys.stderr)

    def point(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def step(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.update(1)

    def advance(self, steps: int) -> None:
        if self.bar is not None and steps:
            self.bar.update(steps)

    def grow(self, steps: int) -> None:
        """More steps than planned (sweep.replication's extra repeats)."""
        if self.bar is not None and steps:
            self.bar.total = (self.bar.total or 0) + steps
            self.bar.refresh()

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
