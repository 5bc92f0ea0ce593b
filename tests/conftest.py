"""Shared test helpers. Every test must leave no process it started behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PY = sys.executable
T = TypeVar("T")


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie is dead: it holds no memory and runs nothing)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; at the deadline raise
    AssertionError naming ``what`` (what the test was waiting for). The synchronisation every test uses
    instead of a sleep: it waits exactly as long as the machine needs, and says what never happened."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


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
    return wait_until(lambda: [k.pid for k in kids] if len(kids := descendants(pid)) >= n else None, timeout_s,
                      f"process {pid} to have {n} descendants")  # fmt: skip


def resident_region_mb(pid: int) -> float:
    """The largest anonymous mapping of ``pid`` that is resident, in MiB (0 if the process is gone).

    A bubble's region is one such mapping, and an idle interpreter with numpy loaded has none above a
    few MiB, so this tells a bubble that holds its region from one still starting (whose total RSS,
    ~35 MiB of interpreter and numpy, already exceeds a small region)."""
    try:
        maps = psutil.Process(pid).memory_maps(grouped=False)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return max((m.rss for m in maps if not m.path or m.path.startswith("[anon")), default=0) / (1 << 20)


def kill_pids(pids: list[int]) -> None:
    """Last-resort cleanup of processes a test started, strictly by PID."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def marked(marker: str) -> list[int]:
    """PIDs of the processes with ``marker`` among their arguments (a sleep length no one else uses): what a test's
    programs left behind, found wherever it was re-parented, init included."""
    return [p.pid for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


@contextmanager
def killing_marked(marker: str) -> Iterator[None]:
    """On leaving, SIGKILL whatever still carries ``marker`` (a failed test's leftovers), by process object:
    psutil checks that each PID still names the process it found."""
    try:
        yield
    finally:
        for pid in marked(marker):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


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


@pytest.fixture(autouse=True, scope="session")
def session_machine_lock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's own lock directory, set before any module-scoped fixture runs (a module's shared reporter
    curve, say): without it those runs took the user-wide lock and refused the user's own runs meanwhile."""
    path = tmp_path_factory.mktemp("session-machine-lock")
    before = os.environ.get("BUBBLEUP_LOCK_DIR")
    os.environ["BUBBLEUP_LOCK_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("BUBBLEUP_LOCK_DIR", None)
    else:
        os.environ["BUBBLEUP_LOCK_DIR"] = before


@pytest.fixture(autouse=True)
def own_machine_lock(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's runs take the machine lock (bubbleup.machine.lock) in a directory of the test's own, so
    tests, and other people's test sessions on this machine, never refuse one another; a test of the
    lock itself runs its two runs in one test, so they share it. Children inherit it through the environment."""
    path = tmp_path_factory.mktemp("machine-lock")
    monkeypatch.setenv("BUBBLEUP_LOCK_DIR", str(path))
    return path


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
        # a quick start check: the suite makes ~100 runs, each waiting for the window (tests of the check itself
        # set the default back)
        "limits": {"start_check_s": 0.3},
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


@contextmanager
def running_cli(args: list[str], cwd: Path, under: Sequence[str] = ()) -> Iterator[tuple[subprocess.Popen[str],
                                                                                      list[int]]]:  # fmt: skip
    """``bubbleup ARGS`` in the background (``under`` a command such as ``nohup``); on leaving, it is killed if
    still running, and so is every PID the test appended to the yielded list (its children, by PID only)."""
    proc = start_cli(args, cwd, under)
    pids: list[int] = []
    try:
        yield proc, pids
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_pids([p for p in pids if p])


def start_cli(args: list[str], cwd: Path, under: Sequence[str] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen([*under, PY, "-m", "bubbleup", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
