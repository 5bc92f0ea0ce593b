"""Campaigns on a Ray cluster: each run on a host of its own, as many hosts at once as the cluster has.

Imported only for ``bubbleup campaign FILE --ray ADDRESS``: without it nothing of Ray is imported, and Ray
is an optional extra (``pip install 'bubbleup[ray]'``).

- **One run per host, nothing else of ours beside it.** Every host offers one unit of the custom resource
  ``bubbleup_host`` (``ray start ... --resources='{"bubbleup_host": 1}'``) and every run asks for it, so Ray's
  own scheduler never puts two runs on one host; a run that ``requires`` CPUs or memory asks Ray for those
  too. Runs wait in Ray's queue until a host is free.
- **The ordinary orchestrator on each host.** The task starts ``python -m bubbleup run`` there (bubbles,
  worker, budgets, cleanup all unchanged; it dies with the task) in a directory of its own, and streams
  the run directory back as it grows: each CSV's new complete lines and the manifest, after every point
  (a Ray generator task). The driver writes the campaign's copy, so the run directory carries that host's
  own environment in its manifest.
- **A host that dies** leaves the driver's copy with every point that was complete, marked
  ``interrupted``; the campaign goes on. ``--resume`` ships the copy to whichever host is free and resumes it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bubbleup.campaign import Campaign, PlannedRun, finish_run, unmet
from bubbleup.errors import UserError
from bubbleup.procs import describe_exit
from bubbleup.store import manifest as manifest_io
from bubbleup.store.layout import MANIFEST, REPORT, is_run_dir
from bubbleup.store.writer import RunWriter

#: The custom resource each host offers once: what keeps two runs off one host.
HOST_RESOURCE = "bubbleup_host"
#: The files a run directory grows by appending complete lines (streamed as deltas). points.csv first: the
#: writer commits a point's data rows before its point rows, so data read after the points always holds every
#: row of the points sent (and perhaps a next point's, which a resume drops as orphans), never fewer.
APPENDED = ("points.csv", "samples.csv", "telemetry.csv", "bubbles.csv", "worker.log")
POLL_S = 0.5
#: How long a cluster's address may take to answer before ``--ray ADDRESS`` is refused.
CONNECT_S = 5.0
#: A host's scratch directory for one run: ``<tmp>/bubbleup-ray-<task PID>-<random>`` (``procs.owned_tmpdir``).
WORK_PREFIX = "bubbleup-ray-"

_lock = threading.Lock()  # campaign.json and index.html are written by one driver thread at a time


def _collect(run_dir: Path, offsets: dict[str, int], manifest_seen: list[float]) -> dict[str, Any]:
    """What the run directory gained since ``offsets``: complete lines only, so no row is ever torn."""
    out: dict[str, Any] = {"append": {}}
    for name in APPENDED:
        path = run_dir / name
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            f.seek(offsets.get(name, 0))
            chunk = f.read()
        if name != "worker.log":
            chunk = chunk[: chunk.rfind(b"\n") + 1]
        if chunk:
            out["append"][name] = chunk
            offsets[name] = offsets.get(name, 0) + len(chunk)
    manifest = run_dir / MANIFEST
    if manifest.is_file() and manifest.stat().st_mtime != manifest_seen[0]:
        manifest_seen[0] = manifest.stat().st_mtime
        out["manifest"] = manifest.read_text()
    return out


def host_run(run_id: str, given: dict[str, Any], source: str, files: dict[str, bytes] | None,
             allow_concurrent: bool, cwd: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """On a host: run (or, given ``files``, resume) the scenario with the ordinary command line, and yield the
    run directory's growth as it happens; last, how the command ended. It runs in ``cwd``, the directory the
    campaign was started in, where that exists on the host: a scenario's relative paths (an adaptive workload's
    profile, a python workload's path) mean there what they mean in a local campaign."""
    import ray

    from bubbleup.procs import owned_tmpdir, tied_to_this_process

    work = owned_tmpdir(WORK_PREFIX)  # a node killed mid-run leaves it; the next run on this machine removes it
    run_dir = work / run_id
    try:
        offsets: dict[str, int] = {}
        if files:
            run_dir.mkdir()
            for name, data in files.items():
                (run_dir / name).write_bytes(data)
            offsets = {name: len(data) for name, data in files.items() if name in APPENDED}
            args = ["run", "--resume", str(run_dir)]
        else:
            scenario = work / Path(source).name
            scenario.write_text(yaml.safe_dump(given, sort_keys=False))
            args = ["run", str(scenario), "--out", str(run_dir)]
        args += ["-q", "--no-report"] + (["--allow-concurrent"] if allow_concurrent else [])
        yield {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}
        with open(work / "stderr.txt", "wb") as err:
            here = cwd if cwd and Path(cwd).is_dir() else work
            proc = subprocess.Popen([sys.executable, "-m", "bubbleup", *args], cwd=here, stdout=subprocess.DEVNULL,
                                    stderr=err, preexec_fn=tied_to_this_process())  # fmt: skip
            seen = [0.0]
            while proc.poll() is None:
                time.sleep(POLL_S)
                delta = _collect(run_dir, offsets, seen)
                if delta["append"] or "manifest" in delta:
                    yield delta
        final = _collect(run_dir, offsets, [0.0])
        tail = (work / "stderr.txt").read_text(errors="replace").strip().splitlines()[-3:]
        yield {**final, "returncode": proc.returncode, "stderr": "\n".join(tail)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _apply(target: Path, msg: dict[str, Any]) -> None:
    """Write one delta from the host into the campaign's copy of the run directory."""
    target.mkdir(parents=True, exist_ok=True)
    for name, chunk in msg.get("append", {}).items():
        with open(target / name, "ab") as f:
            f.write(chunk)
    if "manifest" in msg:
        tmp = target / f"{MANIFEST}.tmp"
        tmp.write_text(msg["manifest"])
        tmp.replace(target / MANIFEST)


def _mark_interrupted(target: Path, reason: str) -> None:
    path = target / MANIFEST
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    if data.get("status") in ("complete", "failed"):
        return
    data["status"], data["stop_reason"] = "interrupted", reason
    path.write_text(json.dumps(data, indent=2))


def resume_files(target: Path) -> dict[str, bytes] | None:
    """The campaign's copy of a run to resume on a host, tidied first as the host's resume will tidy it (rows of a
    point the host streamed only in part dropped): the host then streams from the lengths shipped, and a file its
    resume shortened would have been read from the wrong offsets. None: nothing to resume."""
    if not is_run_dir(target):
        return None
    RunWriter(target, manifest_io.read(target / MANIFEST)).tidy()
    return {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}


def _drive(campaign: Campaign, run: PlannedRun, task: Any, options: dict[str, Any], allow_concurrent: bool) -> None:
    """Start one run on the cluster and write what it streams back, until it ends or its host dies."""
    import ray

    target = campaign.run_dir(run)
    files = resume_files(target)
    stream = task.options(**options).remote(run.id, run.given, run.scenario, files, allow_concurrent, os.getcwd())
    try:
        for ref in stream:
            msg = ray.get(ref)
            if "node" in msg:
                with _lock:
                    run.host = f"{msg['host']} (node {msg['node'][:8]})"
                    campaign.save()
                continue
            _apply(target, msg)
            code = msg.get("returncode")
            if code not in (None, 0) and not is_run_dir(target):
                run.note = f"failed to start (exit {code}): {msg.get('stderr', '')}"
            elif code not in (None, 0):  # killed on the host (an OOM kill), or refused there (a resume on a host
                # unlike the one the run began on): it could not mark itself, and its last line says why
                said = str(msg.get("stderr") or "").strip().splitlines()[-1:]
                why = f" ({said[0][:300]})" if said else ""
                _mark_interrupted(target, f"the run ended on {run.host or '?'} with {describe_exit(code)}{why}; "
                                          f"completed points kept, --resume goes on")  # fmt: skip
                run.note = f"ended on the host with {describe_exit(code)}{why}"
    except ray.exceptions.RayTaskError as exc:  # our task raised on the host: not a lost host, but as final
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        _mark_interrupted(target, f"the task failed on {run.host or '?'}: {first}")
        run.note = f"failed on the host: {first}"
    except ray.exceptions.RayError as exc:  # the host (or its worker process) went away
        what = type(exc).__name__
        _mark_interrupted(target, f"host {run.host or '?'} lost ({what}); completed points kept, --resume goes on")
        run.note = f"host lost mid-run ({what})"
    with _lock:
        finish_run(campaign, run, report=False)  # reports are drawn once every run has ended (run())


def _hosts(ray: Any) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(HOST_RESOURCE, 0) >= 1]


def connect(address: str) -> list[dict[str, Any]]:
    """Join the Ray cluster at ``address`` ('auto' finds a running one) and return its hosts, before a campaign
    directory is made: a wrong address is one line and exit 2, not a retry loop (Ray's own waits for minutes)."""
    try:
        import ray
    except ImportError:
        raise UserError("campaign --ray needs Ray, which is not installed here: pip install 'bubbleup[ray]'") from None
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_S).close()
        except OSError as exc:
            raise UserError(f"campaign --ray {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                            f"start one with ray start --head, or give its address") from None  # fmt: skip
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"campaign --ray {address}: cannot connect to a Ray cluster: {exc}") from None
    hosts = _hosts(ray)
    if not hosts:
        raise UserError(f"campaign --ray {address}: no host offers the {HOST_RESOURCE} resource; start each with "
                        f"ray start ... --resources='{{\"{HOST_RESOURCE}\": 1}}'")  # fmt: skip
    return hosts


def run(campaign: Campaign, address: str, allow_concurrent: bool = False) -> None:
    """Run what is left of ``campaign`` on the Ray cluster at ``address`` (joined first if :func:`connect` was not)."""
    import ray

    hosts = connect(address)
    task = ray.remote(max_retries=0)(host_run)
    campaign.engine = f"ray ({address}, {len(hosts)} hosts)"
    campaign.status = "running"
    campaign.save()
    todo = []
    for r in campaign.todo():
        fits = [h for h in hosts if not unmet(r.requires, int(h["Resources"].get("CPU", 0)),
                                              h["Resources"].get("memory", 0) / 1e9)]  # fmt: skip
        if not fits:
            r.note = f"skipped: no host of the cluster has what it requires ({r.requires})"
            continue
        options = {"resources": {HOST_RESOURCE: 1}, "num_cpus": r.requires.get("cpus", 0),
                   "memory": int(r.requires.get("memory_gb", 0) * 1e9)}  # fmt: skip
        todo.append((r, options))
    pool = ThreadPoolExecutor(max_workers=max(1, len(todo)))
    try:
        for f in [pool.submit(_drive, campaign, r, task, o, allow_concurrent) for r, o in todo]:
            f.result()
        ran = {r.id for r, _ in todo}
        for r in campaign.runs:  # now, with nothing measuring (the driver may share a host with a run); those an
            # interrupted campaign left without one too
            if r.id in ran or not (campaign.run_dir(r) / REPORT).is_file():
                finish_run(campaign, r)
        campaign.status = campaign.ended()
    except BaseException:
        # Interrupted: disconnecting ends every task this driver owns (each host's orchestrator dies with its
        # task, and its bubbles and worker with it); what they streamed is kept, marked interrupted.
        campaign.status = "interrupted"
        ray.shutdown()
        for r, _ in todo:
            _mark_interrupted(campaign.run_dir(r), "the campaign was interrupted; --resume goes on")
        raise
    finally:
        pool.shutdown(wait=True)
        with _lock:
            campaign.save()
            from bubbleup.campaign import write_index

            write_index(campaign)
