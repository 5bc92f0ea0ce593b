"""Run by ``tox -e light``: bubbleup installed without extras works, and asks for TensorFlow by its extra.

Not a pytest module: it checks the environment it runs in, which must not have TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(tmp: str) -> int:
    if importlib.util.find_spec("tensorflow") is not None:
        print("check_light_install: TensorFlow is installed here; this check needs an environment without it")
        return 1
    cmd = [sys.executable, "-c", "import sys, bubbleup, bubbleup.analysis, bubbleup.report.html; "
           "assert 'tensorflow' not in sys.modules"]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT)
    out = Path(tmp) / "smoke"
    env = {**os.environ, "BUBBLEUP_LOCK_DIR": str(Path(tmp) / "lock")}  # a check, not a measurement: never refused
    subprocess.run([sys.executable, "-m", "bubbleup", "run", "scenarios/smoke.yaml", "--out", str(out), "-q"],
                   check=True, cwd=ROOT, env=env)  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and (out / "report.html").stat().st_size > 10_000, manifest["status"]
    done = subprocess.run([sys.executable, "-m", "bubbleup", "validate", "scenarios/approxnet-count.yaml"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "bubbleup[approxnet]" in lines[0], done.stderr
    print(f"light install ok: smoke run complete; approxnet without TensorFlow says: {lines[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
