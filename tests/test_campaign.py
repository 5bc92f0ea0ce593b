"""Campaigns on this machine: several scenarios one after another, each its own run directory under one campaign
directory, one page linking every report with each run's cliffs and validity; interrupt and --resume at campaign
level; requirements a host does not meet; bad campaign files in one line."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, running_cli, smoke_dict, wait_until, write_scenario

from bubbleup import analysis

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others


def _campaign(tmp_path: Path, runs: list[dict[str, object]], name: str = "camp") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "runs": runs}, sort_keys=False))
    return path


def test_a_campaign_runs_each_scenario_into_its_own_run_directory(tmp_path: Path) -> None:
    write_scenario(tmp_path, smoke_dict(name="quick"), "quick.yaml")
    write_scenario(tmp_path, smoke_dict(**{"name": "sized", "sweep.values": [0, 1, 2]}), "sized.yaml")
    camp = _campaign(tmp_path, [{"scenario": "quick.yaml", "repeats": 2}, {"scenario": "sized.yaml"},
                                {"scenario": "quick.yaml", "requires": {"cpus": 4096}}])  # fmt: skip
    out = tmp_path / "out"
    done = run_cli(["campaign", str(camp), "--out", str(out), "-q"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    state = json.loads((out / "campaign.json").read_text())
    assert state["status"] == "complete"
    ids = [r["id"] for r in state["runs"]]
    assert ids == ["01-quick-1", "02-quick-2", "03-sized", "04-quick"]
    for run_id in ids[:3]:
        run = analysis.load_run(out / run_id)
        assert run.status == "complete" and (out / run_id / "report.html").is_file()
    assert analysis.load_run(out / "03-sized").values == [0.0, 1.0, 2.0]
    assert not (out / "04-quick").exists() and state["runs"][3]["note"].startswith("skipped: needs 4096 CPUs")
    page = (out / "index.html").read_text()
    for run_id in ids[:3]:
        assert f'href="{run_id}/report.html"' in page
    assert "skipped: needs 4096 CPUs" in page
    assert page.count(">VALID<") + page.count(">INVALID<") == 3  # each run's verdict
    assert page.count("<li>") >= 3 * 2  # each run's cliffs, one per setting (two settings)


def test_an_interrupted_campaign_resumes_where_it_stopped(tmp_path: Path) -> None:
    """SIGINT in the second run: the campaign says interrupted (exit 130), the first run is complete, the second
    keeps its completed points; --resume completes the second from there and runs the third."""
    write_scenario(tmp_path, smoke_dict(name="quick"), "quick.yaml")
    slow = smoke_dict(**{"name": "slow", "sweep.values": [0, 1, 2, 3], "workload.inferences_per_setting": 400})
    write_scenario(tmp_path, slow, "slow.yaml")
    camp = _campaign(tmp_path, [{"scenario": "quick.yaml"}, {"scenario": "slow.yaml"}, {"scenario": "quick.yaml"}])
    out = tmp_path / "out"
    with running_cli(["campaign", str(camp), "--out", str(out), "-q"], cwd=tmp_path) as (proc, _):
        points = out / "02-slow" / "points.csv"
        wait_until(lambda: points.is_file() and len(points.read_text().splitlines()) >= 3, 240, "a point of 02-slow")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    state = json.loads((out / "campaign.json").read_text())
    assert state["status"] == "interrupted"
    assert analysis.load_run(out / "01-quick").status == "complete"
    cut = analysis.load_run(out / "02-slow")
    assert cut.status == "interrupted" and len(cut.points) >= 2
    kept = cut.points[["value", "setting", "median_ms"]].to_dict("records")
    assert not (out / "03-quick").exists()
    done = run_cli(["campaign", "--resume", str(out), "-q"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = analysis.load_run(out / "02-slow")
    assert resumed.status == "complete" and sorted(resumed.values) == [0.0, 1.0, 2.0, 3.0]
    assert resumed.points[["value", "setting", "median_ms"]].to_dict("records")[: len(kept)] == kept
    assert analysis.load_run(out / "03-quick").status == "complete"
    assert json.loads((out / "campaign.json").read_text())["status"] == "complete"


def test_a_bad_campaign_file_is_one_line_exit_2(tmp_path: Path) -> None:
    write_scenario(tmp_path, smoke_dict(name="quick"), "quick.yaml")
    write_scenario(tmp_path, smoke_dict(**{"name": "broken", "sweep.values": [-1]}), "broken.yaml")
    cases = [
        ({"name": "c", "runs": []}, "runs:"),
        ({"name": "c", "runs": [{"scenario": "quick.yaml", "repeat": 2}]}, "runs.0.repeat: unknown key"),
        ({"name": "c", "runs": [{"scenario": "missing.yaml"}]}, "runs.0.scenario: missing.yaml: no such file"),
        ({"name": "c", "runs": [{"scenario": "broken.yaml"}]}, "broken.yaml: sweep.values:"),
        ({"name": "c", "run": [{"scenario": "quick.yaml"}]}, "c4.yaml: run: unknown key"),  # the typo, not "runs"
        ("name: c\nruns: [{scenario: quick.yaml}\n", "c5.yaml: line 3, column 1: invalid YAML: expected ','"),
        ({"name": "c", "runs": [{"scenario": "a\0b.yaml"}]}, "runs.0.scenario: not a usable path"),
        ({"name": "c", "runs": [{"scenario": "x" * 5000}]}, "runs.0.scenario: not a usable path"),
    ]
    for i, (data, where) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        done = run_cli(["campaign", str(path), "--out", str(tmp_path / f"out{i}")], cwd=tmp_path)
        assert done.returncode == 2, (data, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and where in lines[0], (where, done.stderr)
        assert not (tmp_path / f"out{i}").exists()
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "good.yaml").write_text(yaml.safe_dump({"name": "good", "runs": [{"scenario": "quick.yaml"}]}))
    done = run_cli(["campaign", str(tmp_path / "good.yaml"), "--out", str(tmp_path / "a-file")], cwd=tmp_path)
    assert done.returncode == 2 and "a-file: exists and is not a directory" in done.stderr, done.stderr
    done = run_cli(["campaign", "--resume", str(tmp_path)], cwd=tmp_path)
    assert done.returncode == 2 and "not a campaign directory" in done.stderr
    (tmp_path / "campaign.json").write_text("{}")  # JSON, but not what a campaign writes
    done = run_cli(["campaign", "--resume", str(tmp_path)], cwd=tmp_path)
    assert done.returncode == 2 and "campaign.json: not a campaign's record" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    record = {"name": "c", "source": "c.yaml", "started_at": "", "status": "incomplete", "runs": [
        {"id": "../../escape", "scenario": "quick.yaml", "given": {}, "requires": {}}]}  # fmt: skip
    for bad, words in ((json.dumps(record).encode(), "run id '../../escape' is not a plain name"),
                       (b"\xff\xfe{", "campaign.json: unreadable")):  # fmt: skip
        (tmp_path / "campaign.json").write_bytes(bad)
        done = run_cli(["campaign", "--resume", str(tmp_path)], cwd=tmp_path)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path.parent / "escape").exists()


def test_a_campaign_here_imports_nothing_of_ray(tmp_path: Path) -> None:
    """Ray is an optional extra: a campaign without --ray runs without importing it."""
    import subprocess
    import sys

    write_scenario(tmp_path, smoke_dict(name="quick"), "quick.yaml")
    camp = _campaign(tmp_path, [{"scenario": "quick.yaml"}])
    code = ("import sys; from bubbleup import cli; "
            "rc = cli.main(['campaign', sys.argv[1], '--out', sys.argv[2], '-q']); print('ray' in sys.modules, rc)")
    done = subprocess.run([sys.executable, "-c", code, str(camp), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.stdout.split()[-2:] == ["False", "0"], done.stderr[-2000:]


def test_a_ray_address_where_no_cluster_answers_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """Ray's own connect retries for minutes, printing every 5 s; and the campaign directory it left said
    'running', so the same --out was then refused."""
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_scenario(tmp_path, smoke_dict(name="quick"), "quick.yaml")
    camp = _campaign(tmp_path, [{"scenario": "quick.yaml"}])
    out = tmp_path / "out"
    done = run_cli(["campaign", str(camp), "--out", str(out), "--ray", f"127.0.0.1:{port}"], cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "no Ray cluster answers there" in done.stderr
    assert not out.exists()


def test_a_campaign_with_a_failed_run_says_so_and_exits_1(tmp_path: Path) -> None:
    write_scenario(tmp_path, smoke_dict(name="quick"), "quick.yaml")
    broken = smoke_dict(name="broken")
    broken["workload"] = {"kind": "python", "inferences_per_setting": 5, "warmup": 1,
                          "options": {"function": "json:no_such_function"}}  # loads nowhere: the run fails
    write_scenario(tmp_path, broken, "broken.yaml")
    camp = _campaign(tmp_path, [{"scenario": "broken.yaml"}, {"scenario": "quick.yaml"},
                                {"scenario": "quick.yaml", "requires": {"cpus": 4096}}])  # fmt: skip
    done = run_cli(["campaign", str(camp), "--out", str(tmp_path / "out"), "-q"], cwd=tmp_path, timeout=300)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "01-broken: failed" in done.stdout and "03-quick: skipped: needs 4096 CPUs" in done.stdout, done.stdout
    assert "02-quick" not in done.stdout.replace("campaign complete", "")
