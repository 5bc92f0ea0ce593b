"""Functions the `python` workload calls in tests: well-behaved, crashing and hanging ones."""

from __future__ import annotations

import os
import random
import threading
import time

_calls = 0


def _count() -> int:
    global _calls
    _calls += 1
    return _calls


def spin() -> None:
    """About 0.2 ms of pure Python work."""
    sum(i * i for i in range(2000))


def die_on_call_30() -> None:
    """Hard-exit the worker on its 30th call, like a segfault or an abort would."""
    if _count() == 30:
        os._exit(1)
    spin()


def hang_on_call_30() -> None:
    """Stop answering on the 30th call."""
    if _count() == 30:
        time.sleep(3600)
    spin()


def setup_scale(setting: str) -> int:
    return {"small": 200, "large": 4000}.get(setting, 1000)


def work(n: int) -> None:
    sum(i * i for i in range(n))


def print_a_lot() -> None:
    """A chatty workload must not corrupt the worker's protocol channel."""
    print('{"event": "step", "bogus": true}')
    print("x" * 10_000)


def spin_20ms() -> None:
    """About 20 ms of single-threaded pure-Python work: long enough that fair sharing, not wake-up luck, decides."""
    sum(i * i for i in range(200_000))


_rng = random.Random(0)


def bimodal() -> None:
    """Half the calls about 0.2 ms, half about 4 ms, at random: a median that no sample count pins down."""
    for _ in range(20 if _rng.random() < 0.5 else 1):
        spin()


def nap() -> None:
    """About 2 ms asleep: a call that uses almost no CPU."""
    threading.Event().wait(0.002)


def leave_temp_file() -> None:
    """Leave a file in the temporary directory, as TensorFlow's autograph does, and note where (for the test)."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", prefix="leftover-", suffix=".py", delete=False) as f:
        f.write("# generated\n")
    with open(os.environ["LEFTOVER_LOG"], "a") as log:
        log.write(f.name + "\n")


_worker_level_s: float | None = None


def setup_level(setting: str) -> float:
    """Seconds each inference of ``setting`` sleeps: 'steady' 2 ms; 'noisy' 2 ms in the 1st, 3rd, ... worker
    process this test started and 20 ms in the 2nd, 4th, ... (counted in the file $BUBBLEUP_TEST_WORKER_COUNT),
    so its repeats, each in a fresh worker, disagree by design, by far more than any CPU speed could explain."""
    global _worker_level_s
    if setting != "noisy":
        return 0.002
    if _worker_level_s is None:
        path = os.environ["BUBBLEUP_TEST_WORKER_COUNT"]
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
        _worker_level_s = 0.002 if n % 2 == 0 else 0.020
    return _worker_level_s


def sleep_s(seconds: float) -> None:
    time.sleep(seconds)
