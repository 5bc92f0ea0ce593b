"""bubbleup inside a user's own test suite (registered through the ``pytest11`` entry point).

A ``contention`` fixture runs a function the way ``bubbleup run`` runs a workload, in a worker process of
its own, timed there, once with no bubble and once with the bubbles up and ready, and hands back the
result with confidence intervals; every call is saved as an ordinary run directory::

    from mypkg import predict

    def test_predict_holds_up_beside_two_bubbles(contention):
        result = contention(predict, bubbles=2, size_mb=256)
        assert result.slowdown(p=95) <= 1.5

The function must be importable by its module and name in a fresh process (a module's top-level
function is; a lambda or a closure is not): the worker imports it, as pyperf's workers import a
benchmark. ``@pytest.mark.contention(bubbles=4, cpu_duty=1.0)`` sets a test's defaults, and every test
using the fixture carries the marker, so ``-m "not contention"`` leaves them out.

Options, pytest-benchmark's as the model: ``--contention-dir`` (where runs are saved, default
``.bubbleup``), ``--contention-compare=DIR`` (an earlier ``--contention-dir``: each call is compared with
the same call's newest run there, the n-th call of a test with its n-th, and the terminal summary says
how), ``--contention-compare-fail=PCT`` (fail a test whose run is slower than that baseline by PCT at any
point, with the ratio's CI above 1: :func:`bubbleup.analysis.compare.regressions`).

Importing this module stays cheap (pytest loads it in every session of an environment that has
bubbleup): the harness is imported when a test first asks for contention.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bubbleup.analysis.validity import Validity
    from bubbleup.store.reader import Run

#: The comparison lines of this session's contention calls (--contention-compare), for the terminal summary.
_COMPARED = pytest.StashKey[list[str]]()

#: A contention argument as the scenario names it, for the argument's own name in an error.
_ARGUMENT_OF = {"sweep.values": "bubbles", "bubble.size_mb": "size_mb", "bubble.cpu_duty": "cpu_duty",
                "bubble.pattern": "pattern", "bubble.kind": "kind", "workload.inferences_per_setting": "inferences",
                "workload.warmup": "warmup", "sweep.repeats": "repeats", "sweep.settle_s": "settle_s"}  # fmt: skip

#: What a contention call runs unless the call or the test's marker says otherwise.
DEFAULTS: dict[str, Any] = {"bubbles": 2, "size_mb": 256, "cpu_duty": 1.0, "pattern": "stream", "kind": "combined",
                            "inferences": 50, "warmup": 5, "repeats": 2, "settle_s": 0.5}  # fmt: skip


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bubbleup", "contention tests (bubbleup)")
    group.addoption("--contention-dir", default=".bubbleup", metavar="DIR",
                    help="where each contention call's run directory is saved (default: .bubbleup)")  # fmt: skip
    group.addoption("--contention-compare", default=None, metavar="DIR",
                    help="an earlier --contention-dir: compare each test with its newest run there")  # fmt: skip
    group.addoption("--contention-compare-fail", default=None, metavar="PCT",
                    help="fail a test slower than its --contention-compare baseline by PCT (e.g. 10%%) at any "
                         "point, with the ratio's 95%% CI above 1")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "contention(**defaults): the test applies bubbleup contention (the "
                                       "contention fixture); keyword arguments set its defaults")  # fmt: skip
    # The options are checked now, as pytest's own are: a bad one is a usage error before any test runs.
    fail = config.getoption("contention_compare_fail", None)
    if fail is not None:
        from bubbleup.errors import UserError
        from bubbleup.formatting import share_of_percent

        if not config.getoption("contention_compare", None):
            raise pytest.UsageError("--contention-compare-fail needs --contention-compare=DIR, the baseline to "
                                    "compare with")  # fmt: skip
        try:
            share_of_percent(fail, "--contention-compare-fail")
        except UserError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[_COMPARED] = []


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """With --contention-compare, one line per contention call: how it compares with its baseline."""
    lines = config.stash.get(_COMPARED, [])
    if lines:
        terminalreporter.write_sep("-", f"bubbleup contention against {config.getoption('contention_compare')}")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "contention" in getattr(item, "fixturenames", ()) and item.get_closest_marker("contention") is None:
            item.add_marker(pytest.mark.contention)


@dataclass(frozen=True, repr=False)
class ContentionResult:
    """One contention call: the saved run, and its latency and slowdown at any percentile with a 95% CI."""

    run: Run
    path: Path
    bubbles: int

    def _latencies(self, bubbles: int) -> list[Any]:
        """Timed latencies per repeat at ``bubbles`` (the replicates)."""
        s = self.run.samples
        timed = s[(s["phase"] == "timed") & (s["value"] == bubbles)]
        return [g["latency_ms"].to_numpy(dtype=float) for _, g in timed.groupby("repeat")]

    def latency(self, p: float = 50, bubbles: int | None = None) -> float:
        """The ``p``-th percentile latency (ms) under ``bubbles`` (default: the pressure asked for): each repeat's
        percentile, averaged over repeats (the statistic ``bubbleup compare`` uses)."""
        from bubbleup.analysis.stats import replicate_statistic

        return replicate_statistic(self._latencies(self.bubbles if bubbles is None else bubbles), p)

    def slowdown(self, p: float = 50) -> float:
        """Latency at ``p`` with the bubbles up / with none."""
        return self.latency(p) / self.latency(p, 0)

    def interval(self, p: float = 50, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
        """The slowdown's CI: a hierarchical bootstrap, repeats then samples within each (``compare``'s own)."""
        from bubbleup.analysis.compare import ratio_interval

        _, low, high = ratio_interval(self._latencies(0), self._latencies(self.bubbles), p, seed, confidence)
        return low, high

    @property
    def validity(self) -> Validity:
        """The run's VALID / INVALID verdict (``.valid``, ``.reasons``): an assertion on a contaminated run (another
        program busy beside it, a bubble that missed its size) tests the contamination, not the code."""
        from bubbleup.analysis.validity import of_run

        return of_run(self.run)[0]

    def __str__(self) -> str:
        low, high = self.interval(50)
        verdict = self.validity
        invalid = "" if verdict.valid else f"; the run is {verdict.short()}"
        return (f"{self.slowdown(50):.2f}x median slowdown [{low:.2f}, {high:.2f}] beside {self.bubbles} bubbles "
                f"({self.path}{invalid})")  # fmt: skip

    def __repr__(self) -> str:
        # what pytest prints for ``assert ..., result``: the verdict, not a dump of the run's data frames
        return f"ContentionResult({self})"


def _unmeasured(result: ContentionResult) -> str:
    """Why the call has no latencies to compare at 0 or at its bubbles (a step failed or timed out), or ""."""
    for bubbles in sorted({0, result.bubbles}):
        if not result._latencies(bubbles):
            pts = result.run.points
            here = pts[pts["value"] == bubbles]
            why = "; ".join(sorted({f"{r.status}: {r.error}" if isinstance(r.error, str) and r.error else str(r.status)
                                    for r in here.itertuples()})) or "not run"  # fmt: skip
            return f"no timed inferences beside {bubbles} bubbles ({why})"
    return ""


def _target(func: Callable[..., Any]) -> tuple[str, str]:
    """``module:name`` of ``func`` and the directory its top package lives in, for the worker to import it."""
    name, module = getattr(func, "__qualname__", ""), getattr(func, "__module__", None)
    if not module or not re.fullmatch(r"[A-Za-z_]\w*", name or ""):
        raise TypeError(f"contention: {func!r} is not a module's top-level function; the worker process imports "
                        "it by module and name, so define it at the top of a module")  # fmt: skip
    file = getattr(sys.modules.get(module), "__file__", None)
    if file is None:
        raise TypeError(f"contention: the module {module!r} of {name} has no file for the worker to import")
    root = Path(file).resolve().parent
    for _ in range(module.count(".") + (Path(file).stem == "__init__")):  # a package's own function: one up more
        root = root.parent
    return f"{module}:{name}", str(root)


def _slug(nodeid: str) -> str:
    """The test's name as a run name: itself where it is one, else what survives of it and a hash of the whole,
    so that two parametrized cases whose ids differ only in a long or a replaced part never share a baseline.
    At most 88 characters, leaving room for ``.callN`` within a scenario name's 100."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_") or "test"
    if cleaned == nodeid and len(cleaned) <= 88:
        return cleaned
    return f"{cleaned[:79]}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"


def _newest_run(folder: Path) -> Path | None:
    from bubbleup.store.layout import is_run_dir

    runs = sorted(p for p in folder.glob("*") if is_run_dir(p)) if folder.is_dir() else []
    return runs[-1] if runs else None


@pytest.fixture
def contention(request: pytest.FixtureRequest) -> Callable[..., ContentionResult]:
    """``contention(func, bubbles=2, size_mb=256, cpu_duty=1.0, pattern="stream", kind="combined",
    inferences=50, warmup=5, repeats=2)``: run ``func`` with no bubble and beside ``bubbles`` ready
    bubbles, save the run, return a :class:`ContentionResult`."""
    marker = request.node.get_closest_marker("contention")
    config = request.config
    # The test's module and name, not its node id: the node id is relative to pytest's rootdir, which moves
    # with the paths on the command line, and a baseline must be found again under the same name.
    module = getattr(request.node.module, "__name__", "") if getattr(request.node, "module", None) else ""
    slug = _slug(f"{module}.{request.node.name}" if module else request.node.nodeid)
    calls = [0]

    def run(func: Callable[..., Any], **given: Any) -> ContentionResult:
        from bubbleup.api import run as run_scenario
        from bubbleup.errors import UserError
        from bubbleup.scenario import scenario_from_dict

        marked = marker.kwargs if marker is not None else {}
        for where, args in (("", given), ("@pytest.mark.contention: ", marked)):
            unknown = set(args) - set(DEFAULTS)
            if unknown:
                raise TypeError(f"contention: {where}unknown argument(s) {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(DEFAULTS)}")  # fmt: skip
        if marker is not None and marker.args:
            raise TypeError(f"contention: @pytest.mark.contention takes keyword arguments only, got {marker.args!r}")
        o = {**DEFAULTS, **marked, **given}
        function, path = _target(func)
        # the n-th call of a test is saved, and compared, as the n-th: a test may measure two functions
        calls[0] += 1
        name = slug if calls[0] == 1 else f"{slug}.call{calls[0]}"
        data = {
            "name": name,
            "description": f"{request.node.nodeid}: {function} beside {o['bubbles']} bubbles (bubbleup pytest plugin)",
            "workload": {"kind": "python", "inferences_per_setting": o["inferences"], "warmup": o["warmup"],
                         "restart": "per_repeat", "options": {"function": function, "path": path}},
            "bubble": {"kind": o["kind"], "size_mb": o["size_mb"], "cpu_duty": o["cpu_duty"], "pattern": o["pattern"]},
            "sweep": {"axis": "count", "values": sorted({0, int(o["bubbles"])}), "repeats": o["repeats"],
                      "settle_s": o["settle_s"]},
        }  # fmt: skip
        try:
            scenario = scenario_from_dict(data, f"contention({function})")
            done = run_scenario(scenario, reports_root=Path(config.getoption("contention_dir")), report=False)
        except UserError as exc:
            said = str(exc)
        else:
            said = ""
        if said:  # failed outside the except: said once, not "during handling of the above exception"
            for field, argument in _ARGUMENT_OF.items():
                said = said.replace(f": {field}: ", f": {argument}: ", 1)
            pytest.fail(said, pytrace=False)
        result = ContentionResult(done, done.path, int(o["bubbles"]))
        unmeasured = _unmeasured(result)
        if unmeasured:
            pytest.fail(f"contention({function}): {unmeasured} ({done.path})", pytrace=False)
        _gate(config, name, result)
        return result

    return run


def _gate(config: pytest.Config, name: str, result: ContentionResult) -> None:
    """With --contention-compare, compare with the call's newest baseline run (said in the terminal summary);
    with --contention-compare-fail, fail on a regression."""
    base_dir = config.getoption("contention_compare")
    if not base_dir:
        return
    from bubbleup.analysis.compare import Gate, compare_runs, regressions, table_rows
    from bubbleup.formatting import share_of_percent
    from bubbleup.store.reader import load_run

    baseline = _newest_run(Path(base_dir) / name)
    compared = config.stash.setdefault(_COMPARED, [])
    if baseline is None or baseline.resolve() == result.path.resolve():
        compared.append(f"{name}: no baseline run under {base_dir}")
        return
    cmp = compare_runs(load_run(baseline), result.run)
    rows = [r for r in table_rows(cmp.table) if r.ratio == r.ratio]  # NaN: a point with nothing to compare
    worst = max(rows, key=lambda r: r.ratio, default=None)
    largest = (f"; largest B/A {worst.ratio:.2f}x [{worst.ratio_low:.2f}, {worst.ratio_high:.2f}] at "
               f"{worst.value:g} bubbles" if worst is not None else "")  # fmt: skip
    compared.append(f"{name}: {cmp.flagged} of {len(cmp.table)} points changed{largest} (against {baseline})")
    fail = config.getoption("contention_compare_fail")
    if fail is None:
        return
    found = regressions(cmp, Gate(slower=share_of_percent(fail, "--contention-compare-fail")))
    if found:
        pytest.fail(f"contention regression against {baseline}:\n" + "\n".join(found), pytrace=False)
