"""Shared test helpers. Every test must leave no process it started behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PY = sys.executable


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie is dead: it holds no memory and runs nothing)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_all_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait until none of ``pids`` is alive; return the survivors after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if alive(p.pid)]
    except psutil.NoSuchProcess:
        return []


def wait_for_children(pid: int, n: int, timeout_s: float = 60) -> list[int]:
    """PIDs of ``pid``'s descendants once there are at least ``n``; fails the test if that never happens."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = descendants(pid)
        if len(kids) >= n:
            return [k.pid for k in kids]
        time.sleep(0.1)
    raise AssertionError(f"orchestrator {pid} never had {n} descendants: {[k.pid for k in descendants(pid)]}")


def kill_pids(pids: list[int]) -> None:
    """Last-resort cleanup of processes a test started, strictly by PID."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def no_leftover_children():
    """Fail any test that leaves a child process of the test runner running (and clean it up)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    new = [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in before and alive(p.pid)]
    left = wait_all_gone(new, 5.0)
    if left:
        kill_pids(left)
        pytest.fail(f"test left processes running: {left}")


def write_scenario(directory: Path, data: dict[str, Any], name: str = "scenario.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def smoke_dict(**overrides: Any) -> dict[str, Any]:
    """A fast, valid scenario (synthetic workload, tiny bubbles) to derive test cases from."""
    data: dict[str, Any] = {
        "name": "test",
        "workload": {
            "kind": "synthetic",
            "settings": "all",
            "inferences_per_setting": 10,
            "warmup": 2,
            "options": {"working_sets_kb": [64, 256], "rounds": 2},
        },
        "bubble": {"size_mb": 16, "cpu_duty": 0.5, "pattern": "stream"},
        "sweep": {"axis": "count", "values": [0, 1], "repeats": 1, "settle_s": 0.0},
    }
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data


def run_cli(args: list[str], cwd: Path, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "bubbleup", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)  # fmt: skip


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([PY, "-m", "bubbleup", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
