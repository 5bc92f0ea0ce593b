"""Errors the CLI turns into one clear line and an exit status, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (scenario, flags, paths): exit status 2."""

    exit_code = 2


class RunFailed(Exception):
    """The run itself could not go on (e.g. the workload cannot even load): exit status 1."""

    exit_code = 1


class BubbleFailed(RuntimeError):
    """A bubble died or did not become ready in time; the message names it."""
