"""Errors the CLI turns into one clear line and an exit status, never a traceback."""

from __future__ import annotations

import argparse
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
        self.exit(2, f"error: {self.prog}: {message} (see: {self.prog} --help)\n")
