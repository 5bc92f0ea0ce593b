"""Campaigns on a Ray cluster, tested for real on one machine: a local multi-node cluster (``ray.cluster_utils``),
each worker node offering one ``bubbleup_host``. Runs land one per node at a time, a node killed mid-run leaves an
interrupted run with its completed points while the campaign goes on, --resume finishes it on another node (and
removes the scratch directory the killed one left), and the run directories have the shape of local runs. Timing is
not asserted: the nodes share this machine (runs are ``--allow-concurrent``)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import ray
import yaml
from conftest import run_cli, smoke_dict, wait_all_gone, wait_until, write_scenario
from ray.cluster_utils import Cluster

from bubbleup import analysis, campaign, campaign_ray, procs

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = [pytest.mark.slow, pytest.mark.beside_others]


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, list[Any]]]:
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [c.add_node(num_cpus=1, resources={campaign_ray.HOST_RESOURCE: 1}) for _ in range(2)]
    c.wait_for_nodes()
    try:
        yield c, nodes
    finally:
        ray.shutdown()
        c.shutdown()


def _plan(tmp_path: Path, runs: list[dict[str, Any]], out: Path) -> campaign.Campaign:
    path = tmp_path / "camp.yaml"
    path.write_text(yaml.safe_dump({"name": "camp", "runs": runs}, sort_keys=False))
    return campaign.start(path, out)


def _scratch() -> set[str]:
    """The hosts' scratch directories on this machine (``bubbleup-ray-*``, whatever their owner)."""
    return {d.name for d in Path(tempfile.gettempdir()).glob(f"{campaign_ray.WORK_PREFIX}*")}


def _span(run_dir: Path) -> tuple[float, float]:
    m = json.loads((run_dir / "manifest.json").read_text())
    return m["started_epoch"], dt.datetime.fromisoformat(m["finished_at"]).timestamp()


def test_runs_land_one_per_node_and_look_like_local_runs(tmp_path: Path, cluster: tuple[Cluster, list[Any]]) -> None:
    c, nodes = cluster
    write_scenario(tmp_path, smoke_dict(name="quick"), "quick.yaml")
    camp = _plan(tmp_path, [{"scenario": "quick.yaml", "repeats": 3}], tmp_path / "out")
    campaign_ray.run(camp, c.address, allow_concurrent=True)
    assert camp.status == "complete"
    hosts = {r.id: r.host for r in camp.runs}
    node_ids = {n.node_id[:8] for n in nodes}
    assert all(h.split("(node ")[1][:8] in node_ids for h in hosts.values()), hosts
    # never two runs on one node at once
    by_node: dict[str, list[tuple[float, float]]] = {}
    for r in camp.runs:
        by_node.setdefault(r.host, []).append(_span(camp.run_dir(r)))
    for spans in by_node.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
    # the shape of a local run of the same scenario
    local = tmp_path / "local"
    assert run_cli(["run", str(tmp_path / "quick.yaml"), "--out", str(local), "-q"], cwd=tmp_path).returncode == 0
    want = analysis.load_run(local)
    for r in camp.runs:
        got = analysis.load_run(camp.run_dir(r))
        assert got.status == "complete" and (camp.run_dir(r) / "report.html").is_file()
        for name in ("samples.csv", "points.csv", "bubbles.csv"):
            a, b = pd.read_csv(local / name), pd.read_csv(camp.run_dir(r) / name)
            assert list(a.columns) == list(b.columns) and len(a) == len(b), name
        assert got.points[["value", "setting", "n"]].equals(want.points[["value", "setting", "n"]])
        assert got.manifest.environment["hostname"]  # the host's own environment
    assert 'href="01-quick-1/report.html"' in (camp.root / "index.html").read_text()


def test_a_node_killed_mid_run_leaves_an_interrupted_run_and_resume_finishes_it(
    tmp_path: Path, cluster: tuple[Cluster, list[Any]]
) -> None:
    c, nodes = cluster
    scratch_before = _scratch()
    slow = smoke_dict(**{"name": "slow", "sweep.values": [0, 1, 2, 3], "workload.inferences_per_setting": 400})
    write_scenario(tmp_path, slow, "slow.yaml")
    write_scenario(tmp_path, smoke_dict(name="quick"), "quick.yaml")
    camp = _plan(tmp_path, [{"scenario": "slow.yaml"}, {"scenario": "quick.yaml"}], tmp_path / "out")
    driver = threading.Thread(target=campaign_ray.run, args=(camp, c.address), kwargs={"allow_concurrent": True})
    driver.start()
    try:
        points = camp.run_dir(camp.runs[0]) / "points.csv"
        wait_until(lambda: points.is_file() and len(points.read_text().splitlines()) >= 3, 300, "a point streamed back")
        victim = next(n for n in nodes if n.node_id.startswith(camp.runs[0].host.split("(node ")[1][:8]))
        orchestrators = [p for p in psutil.process_iter(["cmdline"])
                         if any("01-slow" in a for a in (p.info["cmdline"] or []))]  # fmt: skip
        started = [q.pid for p in orchestrators for q in [p, *p.children(recursive=True)]]
        assert started
        c.remove_node(victim, allow_graceful=False)
        assert wait_all_gone(started, 30) == []  # the host's orchestrator, bubbles and worker died with it
    finally:
        driver.join(timeout=300)
    assert not driver.is_alive()
    cut = analysis.load_run(camp.run_dir(camp.runs[0]))
    assert cut.status == "interrupted" and len(cut.points) >= 2 and "host lost" in camp.runs[0].note
    kept = cut.points[["value", "setting", "median_ms"]].to_dict("records")
    assert analysis.load_run(camp.run_dir(camp.runs[1])).status == "complete"  # the campaign went on
    assert camp.status == "incomplete"  # and says a run is left for --resume
    # The victim's scratch directory outlives it; its owner (the node's Ray worker) may take a moment to notice
    # its raylet is gone and exit. A directory is swept only once its owner is gone, so wait for that first.
    owners = [int(name[len(campaign_ray.WORK_PREFIX):].split("-")[0]) for name in _scratch() - scratch_before]
    assert wait_all_gone(owners, 60) == []
    again = campaign.Campaign.open(camp.root)
    campaign_ray.run(again, c.address, allow_concurrent=True)
    done = analysis.load_run(again.run_dir(again.runs[0]))
    assert done.status == "complete" and sorted(done.values) == [0.0, 1.0, 2.0, 3.0] and again.status == "complete"
    assert done.points[["value", "setting", "median_ms"]].to_dict("records")[: len(kept)] == kept
    assert again.runs[0].host != camp.runs[0].host  # the victim is gone: another node finished it
    # the victim had no chance to remove its scratch directory; the next run on this machine removed it
    assert _scratch() - scratch_before == set()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_the_cli_runs_a_campaign_on_a_head_started_by_ray_start(tmp_path: Path) -> None:
    """``ray start --head`` (blocking, ours by PID) with one bubbleup_host; ``bubbleup campaign --ray`` runs the
    suite's quick scenario twice on it (repeats: 2); the campaign page renders in headless Chromium; stopping
    the head leaves no process behind."""
    from test_report import _chromium, require_chromium

    scenario = write_scenario(tmp_path, smoke_dict(name="smoke"), "smoke.yaml")
    camp = tmp_path / "camp.yaml"
    camp.write_text(yaml.safe_dump({"name": "quick", "runs": [{"scenario": str(scenario), "repeats": 2}]}))
    port = _free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=1", f"--resources={{\"{campaign_ray.HOST_RESOURCE}\": 1}}",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    started: list[int] = []
    try:
        # as `ray start` without --block returns: once the head listens (the campaign refuses an address where
        # nothing answers)
        wait_until(lambda: _listening(port), 60, "the Ray head to listen")
        out = tmp_path / "out"
        done = run_cli(["campaign", str(camp), "--out", str(out), "--ray", f"127.0.0.1:{port}", "-q",
                        "--allow-concurrent"], cwd=tmp_path, timeout=900)  # fmt: skip
        started = [p.pid for p in psutil.Process(head.pid).children(recursive=True)]
        assert done.returncode == 0, done.stderr[-3000:]
        state = json.loads((out / "campaign.json").read_text())
        assert state["status"] == "complete" and state["engine"].startswith("ray (127.0.0.1:")
        for r in state["runs"]:
            assert analysis.load_run(out / r["id"]).status == "complete" and "(node " in r["host"]
        binary = require_chromium()
        dom = _chromium(binary, ["--dump-dom", (out / "index.html").as_uri()], tmp_path / "chromium")
        assert dom.count('href="0') == 2 and "01-smoke-1" in dom and "02-smoke-2" in dom
        assert dom.count(">VALID<") + dom.count(">INVALID<") == 2
    finally:
        procs.terminate([head], grace_s=60)  # SIGTERM: it stops what it started; SIGKILL only after a minute
        assert wait_all_gone(started, 30) == [], "ray start left processes behind"
