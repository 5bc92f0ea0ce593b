"""Errors the CLI turns into one clear line and an exit status, never a traceback."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn


class UserError(Exception):
    """Bad input from the user (scenario, flags, paths): exit status 2."""

    exit_code = 2


class RunFailed(Exception):
    """The run itself could not go on (e.g. the workload cannot even load): exit status 1."""

    exit_code = 1


class BubbleFailed(RuntimeError):
    """A bubble died or did not become ready in time; the message names it."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad argument said in one line on stderr and exit status 2, as bad input is everywhere
    else (argparse prints its whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):
            # argparse reads a value such as -5% as the next option; say how to pass it
            message += " (a value that starts with '-' is written --option=VALUE)"
        self.exit(2, f"error: {self.prog}: {message} (see: {self.prog} --help)\n")


def count_arg(text: str) -> int:
    """An argparse type: a whole number of repeats, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def finite_arg(text: str) -> float:
    """An argparse type: a finite number, whose range the command checks (and says) itself."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def amount_arg(text: str) -> float:
    """An argparse type: a finite number, 0 or more (MiB, seconds, cores)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def positive_arg(text: str) -> float:
    """An argparse type: a finite number above 0 (a measuring window: none measures nothing)."""
    value = amount_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value
