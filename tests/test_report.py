"""The HTML report and the comparison: content, self-containment, partial runs, and rendering in Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import smoke_dict, write_scenario
from fixtures_runs import make_run

from bubbleup import analysis
from bubbleup.analysis import compare
from bubbleup.report import compare as compare_report
from bubbleup.report import figures, trace_figures
from bubbleup.report import html as report
from bubbleup.store.records import POINT_COLUMNS, SAMPLE_COLUMNS

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others

ROOT = Path(__file__).resolve().parents[1]
VALUES = [0, 1, 2, 3, 4, 5]
CURVES = {"LL": [10, 10.5, 11, 11.4, 30, 41], "MM": [14, 15, 16, 17, 18, 19], "HH": [20, 21, 23, 24, 25, 26]}


class _Refs(HTMLParser):
    """Collects every attribute or CSS that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.external: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "link" or (tag == "script" and any(k == "src" for k, _ in attrs)):
            self.external.append(f"<{tag} {attrs}>")
        for key, value in attrs:
            value = value or ""
            if key in ("src", "srcset", "poster", "data", "action", "background", "formaction"):
                if tag == "img" and key == "src":
                    self.imgs.append(value)
                if not value.startswith("data:"):
                    self.external.append(f"{tag} {key}={value[:80]}")
            elif key == "href" and not value.startswith("#"):
                self.external.append(f"{tag} href={value[:80]}")
            elif key == "style" and re.search(r"url\(|@import", value):
                self.external.append(f"{tag} style={value[:80]}")
        self._in_style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._in_style and re.search(r"url\((?!\s*['\"]?data:)|@import", data):
            self.external.append(f"css: {data[:80]}")


def assert_self_contained(text: str, min_images: int) -> list[np.ndarray]:
    """No reference outside the file; every <img> is an embedded PNG that decodes. Returns the decoded images."""
    refs = _Refs()
    refs.feed(text)
    assert refs.external == [], refs.external
    assert len(refs.imgs) >= min_images
    decoded = []
    for src in refs.imgs:
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(io.BytesIO(raw), format="png")
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert (img[..., :3] < 0.9).any(axis=-1).mean() > 0.01  # something is drawn, not a blank canvas
        decoded.append(img)
    return decoded


def figure_ids(text: str) -> list[str]:
    return re.findall(r'<figure id="fig-([a-z-]+)">', text)


def test_report_of_a_complete_run(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, CURVES, VALUES, repeats=2, failed={("HH", 5): "failed"})
    out = report.write_report(run_dir)
    assert out == run_dir / "report.html"
    text = out.read_text()
    assert_self_contained(text, min_images=6)
    assert figure_ids(text) == ["latency", "qos", "distributions", "memory-trace", "memory-bars", "telemetry"]
    assert "Complete: all 12 planned points were measured." in text
    # the summary comes first and says it in words
    summary_at = text.index('id="summary"')
    assert summary_at < text.index('id="figures"') < text.index('id="tables"') < text.index('id="scenario"')
    assert "LL tolerates 3 bubbles of 512 MiB; its latency (IQM) rises 2." in text
    assert "MM shows no cliff up to 5 bubbles of 512 MiB" in text
    assert "HH tolerates 4 bubbles of 512 MiB; at 5 it stops working (failed: worker failed (fake))." in text
    assert text.count("<tr><td>LL</td>") == 6  # one statistics row per pressure
    assert "p99 = max (n=80)" in text  # thin tails are explained, not hidden
    assert "size_mb: 512" in text and "Fake CPU @ 2.0GHz" in text and "intra_op_threads" in text
    assert not list(run_dir.glob("*.tmp"))


def test_report_of_an_interrupted_run_names_the_missing_points(tmp_path: Path) -> None:
    run_dir = make_run(
        tmp_path, CURVES, VALUES, repeats=2, missing=[(1, 4), (1, 5)], status="interrupted", telemetry=False
    )
    written = report.write(run_dir)
    text = written.path.read_text()
    assert "Interrupted run: the data below is partial." in text
    assert "2 of 12 planned points (repeat x value) are missing" in text
    # the command line says so too, first, with how to finish it
    assert written.verdicts[0].startswith("Interrupted run: the data below is partial. 2 of 12 planned points")
    assert written.verdicts[0].endswith(f"'bubbleup run --resume {run_dir}' measures what is missing.")
    assert "repeat 2: 4, 5 bubbles" in text
    assert "fig-telemetry" not in text  # no telemetry recorded: no empty figure either
    assert_self_contained(text, min_images=5)


def test_report_when_every_point_failed(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, {"HH": [10, 11]}, [0, 1], failed={("HH", 0): "failed", ("HH", 1): "timeout"})
    text = report.write_report(run_dir).read_text()
    assert "HH does not work even at 0 (failed: worker failed (fake))." in text
    assert 'class="status-timeout"' in text
    assert_self_contained(text, min_images=1)  # telemetry still drawn


@pytest.mark.parametrize("samples_text", ["", ",".join(SAMPLE_COLUMNS) + "\n"])
def test_report_of_a_run_with_no_data_yet(tmp_path: Path, samples_text: str) -> None:
    run_dir = make_run(tmp_path, {"A": [10, 11]}, [0, 1], status="running", telemetry=False)
    (run_dir / "samples.csv").write_text(samples_text)
    (run_dir / "points.csv").write_text(",".join(POINT_COLUMNS) + "\n")
    text = report.write_report(run_dir).read_text()
    assert "had not finished" in text
    assert "No measurements yet" in text
    assert "repeat 1: 0, 1 bubbles" in text
    assert "<img" not in text


def test_size_sweep_with_many_settings_uses_small_multiples(tmp_path: Path) -> None:
    sizes = [64, 128, 256, 512, 1024]
    curves = {f"s{i}": [10 + i, 10.2 + i, 10.4 + i, 10.6 + i, 30 + i] for i in range(10)}
    run_dir = make_run(tmp_path, curves, sizes, axis="size_mb", n=20, telemetry=False)
    text = report.write_report(run_dir).read_text()
    assert "s0 tolerates a 512 MiB bubble; its latency (IQM) rises" in text
    assert "at 1024 MiB" in text
    images = assert_self_contained(text, min_images=5)
    assert images[0].shape[0] > 600  # three rows of panels, not one crowded plot


def test_comparison_flags_real_differences_only(tmp_path: Path) -> None:
    curves_a = {"A": [10, 11, 12, 13], "B": [20, 21, 22, 23]}
    before = make_run(tmp_path, curves_a, [0, 1, 2, 3], name="before", seed=1, repeats=3)
    after = make_run(tmp_path, {"A": [10, 11, 18, 13], "B": [20, 21, 22, 23]}, [0, 1, 2, 3], name="after", seed=2,
                     repeats=3)  # fmt: skip
    stream = io.StringIO()
    out = compare_report.write_comparison(before, after, stream=stream)
    assert out == after / "compare-before.html"
    cmp = compare.compare_runs(*(analysis.load_run(d) for d in (before, after)))
    t = cmp.table.set_index(["setting", "value"])
    assert t["significant"].sum() == 1 and t.loc[("A", 2), "significant"]
    assert t.loc[("A", 2), "ratio"] == pytest.approx(1.5, rel=0.08)
    assert t.loc[("A", 2), "ratio_low"] > 1.3 and t.loc[("A", 2), "verdict"] == "B slower"
    assert (t["n_repeats_a"] == 3).all() and cmp.flagged == 1
    printed = stream.getvalue()
    row = r"A\s+2\s+12(\.\d)? ms\s+18(\.\d)? ms\s+1\.00x\s+1\.\d+x \[.*\]\s+3/3\s+\* B slower"  # CPU B/A 1.00x
    assert re.search(row, printed), printed
    assert "cliff A: A no cliff up to 3 | B no cliff up to 3 -> agree" in printed  # a transient at 2: not a cliff
    assert "cliffs agree in 2 of 2 settings" in printed
    text = out.read_text()
    assert_self_contained(text, min_images=2)
    assert "B slower" in text and "The recorded set-ups are identical" in text


def test_comparison_names_set_up_changes_and_keeps_start_readings_apart(tmp_path: Path) -> None:
    """Free memory, load average and load times differ between any two runs: listing them as "environment
    differs" cried wolf on every compare. A kernel or a version is a change of set-up and is named."""
    a = make_run(tmp_path, {"A": [10, 11]}, [0, 1], name="a", seed=1, repeats=2)
    b = make_run(tmp_path, {"A": [10, 11]}, [0, 1], name="b", seed=2, repeats=2)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["environment"].update(mem_available_mb=12345.6, loadavg_1m=1.8)
    next(iter(manifest["workload_metadata"].values()))["load_phases_s"] = {"import_tf": 2.3}
    (b / "manifest.json").write_text(json.dumps(manifest))
    only_readings = compare.compare_runs(analysis.load_run(a), analysis.load_run(b))
    assert only_readings.env_diff == () and len(only_readings.env_readings) == 3
    assert "set-up differs" not in compare.format_text(only_readings)
    manifest["environment"]["kernel"] = "6.2.0-other"
    (b / "manifest.json").write_text(json.dumps(manifest))
    stream = io.StringIO()
    html = compare_report.write_comparison(a, b, stream=stream).read_text()
    assert "set-up differs: kernel: 6.1.0-fake -> 6.2.0-other" in stream.getvalue()
    assert "loadavg" not in stream.getvalue()
    assert "6.2.0-other" in html and "12345.6" in html and "which differ between any two runs" in html


def test_comparison_reads_run_to_run_drift_as_noise_not_signal(tmp_path: Path) -> None:
    """One repeat of A drifted 8% slow at every point: a per-sample test would call every point changed,
    but with repeats as the replicates the drift widens the CI instead, and no point is flagged."""
    values = [0, 1, 2]
    drift = {(1, "A", float(v)): 1.08 for v in values}
    a = make_run(tmp_path, {"A": [10, 12, 14]}, values, name="a", seed=1, repeats=2, n=200, repeat_scale=drift)
    b = make_run(tmp_path, {"A": [10, 12, 14]}, values, name="b", seed=2, repeats=2, n=200)
    cmp = compare.compare_runs(analysis.load_run(a), analysis.load_run(b))
    assert cmp.flagged == 0, cmp.table
    # The same difference in both repeats is a change: the CI narrows again.
    slow = make_run(tmp_path, {"A": [12, 14.4, 16.8]}, values, name="slow", seed=3, repeats=2, n=200)
    cmp = compare.compare_runs(analysis.load_run(b), analysis.load_run(slow))
    assert cmp.flagged == 3 and (cmp.table["verdict"] == "B slower").all()


def test_a_change_below_the_minimum_effect_is_no_change(tmp_path: Path) -> None:
    values = [0, 1]
    a = make_run(tmp_path, {"A": [10, 12]}, values, name="a", seed=1, repeats=3, n=400, noise=0.01)
    b = make_run(tmp_path, {"A": [10.3, 12.36]}, values, name="b", seed=2, repeats=3, n=400, noise=0.01)
    strict = compare.compare_runs(analysis.load_run(a), analysis.load_run(b), min_effect=0.0)
    assert strict.flagged == 2  # 3% slower, measurably
    lenient = compare.compare_runs(analysis.load_run(a), analysis.load_run(b))
    assert lenient.flagged == 0 and lenient.table["verdict"].str.startswith("~ (within 5%)").all()


def test_cliff_agreement_within_one_step() -> None:
    from bubbleup.analysis.cliff import Cliff

    def c(setting: str, at: float | None) -> Cliff:
        return Cliff(setting, "count", "break" if at is not None else "none", at=at, measured_max=6)

    values = [0, 1, 2, 3, 4, 5, 6]
    got = compare.cliff_agreement([c("x", 2), c("y", 2), c("z", None), c("w", 2)],
                                  [c("x", 3), c("y", 4), c("z", None), c("w", None)], values)  # fmt: skip
    assert [(g.setting, g.agree) for g in got] == [("x", True), ("y", False), ("z", True), ("w", False)]


# -- rendering in a real browser -------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
WIDTH = 1400
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images).map((i) => {
    const r = i.getBoundingClientRect();
    return {w: i.naturalWidth, h: i.naturalHeight, complete: i.complete,
            x: r.left + window.scrollX, y: r.top + window.scrollY, cw: r.width, ch: r.height};
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({imgs: imgs, height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""


def require_chromium() -> str:
    """The Chromium binary; under CI (CI=true) its absence is a failure, elsewhere a skip."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed (Debian: apt-get install chromium); CI must render the report")
    pytest.skip("chromium is not installed")


def _chromium(binary: str, args: list[str], profile: Path, timeout: float = 120) -> str:
    """Run headless Chromium in its own session; on timeout kill that session (it is ours) and fail."""
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout} s")
    assert proc.returncode == 0, err[-2000:]
    return out


def assert_renders(report_path: Path, tmp_path: Path) -> None:
    """Open the report in headless Chromium: every image decodes, and the screenshot shows every figure."""
    binary = require_chromium()
    text = report_path.read_text()
    n_img = text.count("<img ")
    assert n_img >= 1
    probe = tmp_path / "probe.html"  # a copy with a script that measures the images after load
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = _chromium(
        binary,
        ["--dump-dom", "--virtual-time-budget=10000", f"--window-size={WIDTH},1000", probe.as_uri()],
        tmp_path / "profile-dom",
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, "the probe script did not run"
    facts = json.loads(html.unescape(match.group(1)))
    assert len(facts["imgs"]) == n_img
    for img in facts["imgs"]:
        assert img["complete"] and img["w"] > 300 and img["h"] > 200, img  # decoded by the browser
        assert img["cw"] > 300 and img["ch"] > 150, img  # and laid out at a visible size
    height = min(int(facts["height"]) + 20, 16000)
    shot = tmp_path / "report.png"
    _chromium(
        binary,
        [f"--screenshot={shot}", f"--window-size={WIDTH},{height}", report_path.as_uri()],
        tmp_path / "profile-shot",
    )
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[1] == WIDTH and pixels.shape[0] >= min(height, facts["imgs"][-1]["y"] + 100)
    for img in facts["imgs"]:  # every figure's region of the screenshot is drawn on, in several colours
        x0, y0 = int(img["x"]), int(img["y"])
        region = pixels[y0 : y0 + int(img["ch"]), x0 : x0 + int(img["cw"])]
        assert region.size, img
        inked = (region < 0.85).any(axis=-1).mean()
        colours = len(np.unique((region.reshape(-1, 3) * 15).round(), axis=0))
        assert inked > 0.03 and colours > 8, (img, inked, colours)


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, CURVES, VALUES, repeats=2, failed={("HH", 5): "failed"})
    assert_renders(report.write_report(run_dir), tmp_path)


def test_comparison_renders_in_chromium(tmp_path: Path) -> None:
    a = make_run(tmp_path, CURVES, VALUES, name="a", seed=1, telemetry=False)
    b = make_run(tmp_path, CURVES, VALUES, name="b", seed=2, telemetry=False)
    assert_renders(compare_report.write_comparison(a, b, stream=None), tmp_path)


@pytest.mark.slow
def test_smoke_run_report_renders_in_chromium(tmp_path: Path) -> None:
    """End to end: a quick scenario through the CLI (the shipped smoke scenario runs in test_workloads and
    test_api), its report rewritten by `bubbleup report`, then rendered."""
    pytest.importorskip("bubbleup.sweep.orchestrator")
    require_chromium()
    scenario = write_scenario(tmp_path, smoke_dict(**{"sweep.values": [0, 1, 2], "sweep.repeats": 2,
                                                     "bubble.size_mb": 64}))  # fmt: skip
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bubbleup", "run", str(scenario), "--out", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next(p.parent for p in out.rglob("manifest.json"))
    assert (run_dir / "report.html").is_file()  # written at the end of every run
    first = (run_dir / "report.html").stat().st_mtime_ns
    redo = subprocess.run(
        [sys.executable, "-m", "bubbleup", "report", str(run_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert (run_dir / "report.html").stat().st_mtime_ns >= first
    text = (run_dir / "report.html").read_text()
    assert "Complete: all" in text and " of 64 MiB" in text  # the cliff sentences name the bubbles
    assert_self_contained(text, min_images=4)
    assert_renders(run_dir / "report.html", tmp_path)


def test_run_of_several_workloads_names_each_curve_by_workload(tmp_path: Path) -> None:
    """ApproxNet vs MCDNN in one run: settings may share names, so curves are ``workload:setting``."""
    curves = {
        "approxnet:LL": [10, 10.5, 11, 11.5],
        "approxnet:HH": [30, 31, 32, 33],
        "mcdnn:LL": [12, 12.5, 13, 40],
        "mcdnn:HH": [35, 36, 37, 38],
    }
    run_dir = make_run(tmp_path, curves, [0, 1, 2, 3])
    run = analysis.load_run(run_dir)
    assert run.workloads == ("approxnet", "mcdnn")
    assert run.settings == list(curves)
    assert analysis.missing_points(run) == []
    assert list(analysis.summarise(run)["setting"].unique()) == list(curves)
    cliffs = {c.setting: c for c in analysis.find_cliffs(run)}
    assert (cliffs["mcdnn:LL"].kind, cliffs["mcdnn:LL"].at) == ("break", 3)
    assert cliffs["approxnet:LL"].kind == "none"
    tel = trace_figures.telemetry(run)
    assert [ax.get_ylabel() for ax in tel.axes] == [
        "cpu_percent (%)",
        "mem_available_mb (MiB)",
        "psi_cpu_some_avg10 (%)",
    ]
    text = report.write_report(run_dir).read_text()
    assert "mcdnn:LL tolerates 2 bubbles of 512 MiB" in text
    assert "Complete: all 4 planned points were measured." in text
    assert figure_ids(text) == ["latency", "qos", "distributions", "memory-trace", "memory-switching", "memory-bars",
                               "telemetry"]


def test_a_run_at_one_pressure_compares_configurations_instead_of_finding_cliffs(tmp_path: Path) -> None:
    """The memory experiment runs at 0 bubbles only: a one-point "curve" and "no cliff up to 0" would be noise."""
    curves = {"ApproxNet Mixed:LL": [4.3], "ApproxNet Mixed:HH": [11.9], "MCDNN all:small": [1.9]}
    run_dir = make_run(tmp_path, curves, [0])
    text = report.write_report(run_dir).read_text()
    assert "Summary: configurations side by side" in text and "where is the cliff" not in text
    assert "Complete: the one planned point was measured." in text
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"status-ok\">ok</td>", text.split('id="configurations"')[1])
    assert rows[: len(curves)] == list(curves)
    assert figure_ids(text) == ["distributions", "memory-trace", "memory-switching", "memory-bars", "telemetry"]
    assert_self_contained(text, min_images=4)


def test_crowded_sweep_values_do_not_print_over_each_other(tmp_path: Path) -> None:
    """A size sweep that closes in on a budget (7168, 7680, 7936, 8064 MiB) keeps the last label and drops crowders."""
    values = [0, 1024, 2048, 4096, 6144, 7168, 7680, 7936, 8064]
    run_dir = make_run(tmp_path, {"HH": [20, 21, 22, 23, 24, 25, 26, 27, 28]}, values, axis="size_mb")
    fig = figures.latency_curve(analysis.load_run(run_dir), *_summary_and_cliffs(run_dir))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[0] == "0" and labels[-1] == "8064" and labels.count("") >= 2
    shown = [v for v, text in zip(values, labels, strict=True) if text]
    assert min(np.diff(shown)) / values[-1] >= 0.07
    evenly = [0, 1, 2, 3, 4, 5, 6]
    assert figures._spaced_labels(evenly, [str(v) for v in evenly], log=False) == [str(v) for v in evenly]


def _summary_and_cliffs(run_dir: Path) -> tuple:
    run = analysis.load_run(run_dir)
    summary = analysis.summarise(run)
    return summary, analysis.find_cliffs(run, summary)


@pytest.mark.parametrize(
    ("pressure", "bubbles_at", "label", "words"),
    [
        (
            {"bubble": {"kind": "memory", "size_mb": 16}, "sweep": {"axis": "size_mb", "values": [16, 32], "count": 2}},
            {16: 2, 32: 2},
            "bubble size (MiB), 2 bubbles",
            r"(tolerates|no cliff up to) 2 bubbles of (16|32) MiB",
        ),
        (
            {
                "bubble": None,
                "bubbles": [{"kind": "memory", "size_mb": 16}, {"kind": "cpu", "cpu_duty": 0.2}],
                "sweep": {"axis": "count", "values": [0, 1]},
            },
            {0: 0, 1: 2},
            "bubble sets running (2 bubbles each, largest 16 MiB)",
            # with no cliff the set is named; a cliff at the first set says "tolerates no bubbles": never "N bubbles of"
            r"^(?!.*bubbles? of).*(tolerates no bubbles; |no cliff up to 1 bubble set \(2 bubbles, largest 16 MiB\); )",
        ),
    ],
    ids=["size sweep of 2", "count sweep of a set"],
)
def test_a_real_run_says_what_ran_at_each_point(tmp_path: Path, pressure: dict, bubbles_at: dict, label: str,
                                                words: str) -> None:  # fmt: skip
    """Through the CLI, so the manifest is the orchestrator's own: the summary counts the bubbles that ran, and the
    axis and each cliff sentence describe them (the count of a size sweep; a set as sets of bubbles)."""
    from conftest import run_cli, smoke_dict, write_scenario

    data = smoke_dict(**{"workload.inferences_per_setting": 5})
    data.update({k: v for k, v in pressure.items() if k != "sweep"})
    data["sweep"].update(pressure["sweep"])
    out = tmp_path / "run"
    done = run_cli(["run", str(write_scenario(tmp_path, data)), "--out", str(out), "-q"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = analysis.load_run(out)
    summary = analysis.summarise(run)
    assert summary.groupby("value")["bubble_count"].agg(set).to_dict() == {v: {n} for v, n in bubbles_at.items()}
    assert figures.axis_label(run) == label
    sentences = [c.sentence() for c in analysis.find_cliffs(run, summary)]
    assert len(sentences) == 2 and all(re.search(words, s) for s in sentences), sentences
    text = (out / "report.html").read_text()
    assert all(html.escape(s) in text for s in sentences)


def test_report_of_a_set_of_kinds_names_the_set(tmp_path: Path) -> None:
    """A ``bubbles:`` set on a count sweep: the facts list every kind, missing points and the cliff count sets."""
    kinds = [
        {"kind": "memory", "size_mb": 32, "cpu_duty": 0.0, "pattern": "none"},
        {"kind": "cpu", "size_mb": 0, "cpu_duty": 1.0, "pattern": "none"},
    ]
    run_dir = make_run(tmp_path, {"LL": [10, 10.5, 11, 30]}, [0, 1, 2, 3], bubbles=kinds, repeats=2,
                       missing=[(1, 3), (1, 2)], status="interrupted", telemetry=False)  # fmt: skip
    text = report.write_report(run_dir).read_text()
    assert "<th>bubbles (a set)</th><td>kind memory, size_mb 32, cpu_duty 0.0, pattern none; kind cpu, " in text
    assert "repeat 2: 2, 3 bubble sets" in text
    assert "LL tolerates 2 bubble sets (4 bubbles, largest 32 MiB); its latency (IQM) rises " in text


def test_memory_per_configuration_is_growth_over_the_framework_floor(tmp_path: Path) -> None:
    """Figure 3.1 as the study drew it: one bar per configuration, its peak RSS minus that worker's framework
    floor (from its metadata), coloured by kind; Figure 3.2 follows the configuration that switches."""
    run_dir = make_run(tmp_path, {"ApproxNet Mixed:LL": [5.0], "ApproxNet Mixed:HH": [9.0], "MCDNN full:full": [8.0]},
                       [0])  # fmt: skip
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["workload_metadata"] = {"ApproxNet Mixed": {"framework_rss_mb": 100.0},
                                     "MCDNN full": {"framework_rss_mb": 120.0}}  # fmt: skip
    manifest.setdefault("scenario_effective", {})["workloads"] = [
        {"label": "ApproxNet Mixed", "kind": "approxnet"}, {"label": "MCDNN full", "kind": "mcdnn"}]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    run = analysis.load_run(run_dir)
    fig = trace_figures.memory_by_configuration(run)
    assert fig is not None
    bars = fig.axes[0].patches
    peak = run.samples.groupby("workload")["rss_mb"].max()
    assert [b.get_height() for b in bars] == pytest.approx([peak["ApproxNet Mixed"] - 100, peak["MCDNN full"] - 120])
    assert bars[0].get_facecolor() != bars[1].get_facecolor()  # two kinds, two colours
    assert trace_figures.switching_configuration(run) == "ApproxNet Mixed"
    html = report.write(run_dir).path.read_text()
    for fid in ("memory-configurations", "memory-switching"):
        block = html.split(f'id="fig-{fid}"')[1].split("</figure>")[0]
        assert "data:image/png" in block and "could not be drawn" not in block
    del manifest["workload_metadata"]["MCDNN full"]  # a worker without a floor: no growth figure, not a wrong one
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert trace_figures.memory_by_configuration(analysis.load_run(run_dir)) is None


def test_the_summary_leads_with_the_verdicts_grouped_and_singles_out_what_needs_care(tmp_path: Path) -> None:
    """Twelve settings as twelve sentences hid the one that mattered; the summary now says the verdicts grouped,
    lists only the settings to read with care (a fall, an unsure verdict), and keeps every sentence folded."""
    from test_confidence import SAWTOOTH

    steady = [10, 10.2, 10.4, 10.6, 21, 22, 23]
    curves = {"A": steady, "B": [2 * x for x in steady], "C": [3 * x for x in steady], "HH": SAWTOOTH}
    run_dir = make_run(tmp_path, curves, list(range(7)), repeats=2, n=30)
    text = report.write_report(run_dir).read_text()
    head = text.split('<p class="headline"><strong>')[1].split("</strong>")[0]
    assert head == "cliff at 4 bubbles: A, B, C; cliff at 1 bubble: HH.", head
    care = text.split("<p>Read with care:</p>")[1].split("</ul>")[0]
    assert "HH is not monotone" in care and "A tolerates" not in care
    folded = text.split('<details class="in-words">')[1].split("</details>")[0]
    assert all(f"{s} tolerates" in folded for s in ("A", "B", "C", "HH"))
