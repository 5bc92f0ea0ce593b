"""calibrate measures every kind for real; runs record the calibration and warn about missed targets."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, smoke_dict, write_scenario

from bubbleup.machine.calibrate import calibrate, warnings_for


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    """One real calibration of every kind, shared: each test that changes it works on its own copy."""
    return calibrate(window_s=0.5, reps=5)  # the dial check (bubbleup.dial_check) has its own test (test_placement)


def test_calibration_measures_every_kind(measured: dict[str, Any]) -> None:
    cal = measured
    by_kind = {r["kind"] for r in cal["results"]}
    assert by_kind == {"cpu", "memory", "combined", "bandwidth", "cache", "bubble-up"}
    memory = next(r for r in cal["results"] if r["kind"] == "memory")
    assert abs(memory["delivered"]["region_mb"] - 256) <= 0.1 * 256
    assert memory["delivered"]["core_share"] < 0.05
    paced = next(r for r in cal["results"] if r["probe"] == "bandwidth 1000 MiB/s")["delivered"]["mb_per_s"]
    unpaced = next(r for r in cal["results"] if r["probe"] == "bandwidth unlimited")["delivered"]["mb_per_s"]
    # A held rate never overshoots (ignoring it, the bubble would stream what the unpaced probe does) ...
    assert paced <= 1.1 * 1000, (paced, unpaced)
    # ... and reaches nearly all of it, or of what one core streams if that is less: the unpaced probe ran a few
    # seconds later, on a CPU that may have been up to 1.8x faster then, hence half its rate.
    assert paced >= 0.8 * min(1000, unpaced / 2), (paced, unpaced)
    cache = next(r for r in cal["results"] if r["kind"] == "cache")
    assert cache["delivered"]["accesses_per_s"] > 0
    assert all(r["interference"] > 0 for r in cal["results"])


def test_run_records_the_calibration_and_warns_about_misses(measured: dict[str, Any], tmp_path: Path) -> None:
    cal = copy.deepcopy(measured)
    # Pretend this machine's combined bubbles fell 30% short of their CPU share.
    combined = next(r for r in cal["results"] if r["kind"] == "combined")
    combined["misses"] = {"core_share": -0.30}
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    # The pretended miss is reported for runs that use combined bubbles, and only for those.
    cpu_only = warnings_for(cal, {"cpu"})
    assert not any("combined" in w for w in cpu_only) and all(": cpu duty " in w for w in cpu_only), cpu_only
    assert any("combined 256 MiB duty 1.0 bubbles missed their target: core_share by -30%" in w
               for w in warnings_for(cal, {"combined"})), warnings_for(cal, {"combined"})  # fmt: skip

    scenario = write_scenario(tmp_path, smoke_dict(**{"sweep.values": [0]}))
    done = run_cli(["run", str(scenario), "--out", str(tmp_path / "r"), "-q", "--no-report",
                    "--calibration", str(tmp_path / "cal.json")], cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "combined 256 MiB duty 1.0 bubbles missed their target: core_share by -30%" in done.stderr
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["calibration"]["path"] == str(tmp_path / "cal.json")
    assert any("core_share by -30%" in w for w in manifest["calibration"]["warnings"])


@pytest.mark.beside_others  # input checks: nothing timed
def test_missing_calibration_file_is_exit_2(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, smoke_dict())
    done = run_cli(["run", str(scenario), "--calibration", str(tmp_path / "nope.json")], cwd=tmp_path)
    assert done.returncode == 2 and "no such calibration file" in done.stderr


@pytest.mark.parametrize(("content", "words"), [
    (b"{not json", "not a calibration file (not JSON"),
    (b"[1]", "not a calibration file (no list of probe results)"),
    (b'{"results": {"a": 1}}', "not a calibration file (no list of probe results)"),
    (b'{"results": [{"probe": "x", "kind": "cpu", "misses": [1]}]}', "probe 'x': misses is not an object"),
    (b"\xff\xfe", "not a calibration file (not JSON"),
])  # fmt: skip
@pytest.mark.beside_others  # input checks: nothing timed
def test_a_calibration_file_that_is_not_one_is_exit_2(tmp_path: Path, content: bytes, words: str) -> None:
    """A run told to check its bubbles against a calibration must not go on believing it did: a file that is
    not a calibration is one line naming it, exit 2, and no run directory."""
    (tmp_path / "cal.json").write_bytes(content)
    scenario = write_scenario(tmp_path, smoke_dict())
    done = run_cli(["run", str(scenario), "--calibration", str(tmp_path / "cal.json"), "--reports-root",
                    str(tmp_path / "reports")], cwd=tmp_path)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'cal.json'}: "), lines
    assert words in lines[0] and not (tmp_path / "reports").exists()


@pytest.mark.beside_others  # input checks: nothing timed
def test_calibrate_checks_where_it_will_write_before_it_measures(tmp_path: Path) -> None:
    """A calibration takes minutes; an --out that is a directory was found only at the end, losing them."""
    done = run_cli(["calibrate", "--out", str(tmp_path)], cwd=tmp_path, timeout=30)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: {tmp_path}: is a directory; --out names the calibration file to write"
    ], done.stderr
