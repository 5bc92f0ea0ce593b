"""The package layout keeps the data flow one way: scenario -> run -> store -> analysis -> report.

Imports are read from the source with ``ast`` (function-level imports included, since the code
imports heavy modules lazily), and followed transitively inside the repository.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bubbleup", "workloads")
#: bubbleup modules that start, signal or kill processes, or create cgroups.
PROCESS_MODULES = (
    "bubbleup.procs",
    "bubbleup.sweep",
    "bubbleup.pressure.pool",
    "bubbleup.pressure.kernel",
    "bubbleup.pressure.stress_ng",
    "bubbleup.pressure.budget",
    "bubbleup.pressure.cgroups",
    "bubbleup.pressure.stale",
    "bubbleup.machine.calibrate",
)


def module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = module_files()


def _resolve(name: str) -> str | None:
    """The repository module an import names (``a.b.c`` may be a module or a name inside ``a.b``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (imports for the type checker only)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                stack.extend(child.orelse)
                continue
            stack.append(child)
    return out


@cache
def direct_imports(module: str) -> frozenset[str]:
    """Every module ``module`` imports: repository modules resolved, outside ones by their top-level name."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            local = _resolve(name)
            found.add(local if local is not None else name.split(".")[0])
    found.discard(module)
    return frozenset(found)


@cache
def closure(module: str) -> frozenset[str]:
    seen: set[str] = set()
    stack = [module]
    while stack:
        for dep in direct_imports(stack.pop()):
            if dep not in seen:
                seen.add(dep)
                if dep in MODULES:
                    stack.append(dep)
    return frozenset(seen)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offenders(modules_prefix: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for mod in MODULES:
        if _under(mod, (modules_prefix,)):
            hits = sorted(d for d in closure(mod) if _under(d, forbidden))
            if hits:
                bad[mod] = hits
    return bad


def test_the_walker_sees_imports() -> None:
    # A walker that finds nothing would pass every rule below: check it on known edges first.
    assert "bubbleup.pressure.pool" in direct_imports("bubbleup.sweep.orchestrator")
    assert "bubbleup.store.writer" in direct_imports("bubbleup.sweep.orchestrator")
    assert "pandas" in closure("bubbleup.report.html")
    assert "bubbleup.pressure.kinds" in closure("bubbleup.scenario")  # a function-level import


@pytest.mark.parametrize("layer", ["bubbleup.analysis", "bubbleup.report", "bubbleup.store"])
def test_analysis_report_and_store_import_no_orchestrator_workload_or_tensorflow(layer: str) -> None:
    forbidden = ("bubbleup.sweep", "bubbleup.pressure", "workloads", "tensorflow", "bubbleup.procs")
    assert offenders(layer, forbidden) == {}


def test_analysis_does_not_import_report_and_store_imports_neither() -> None:
    assert offenders("bubbleup.analysis", ("bubbleup.report",)) == {}
    assert offenders("bubbleup.store", ("bubbleup.analysis", "bubbleup.report", "pandas.plotting")) == {}


def test_the_scenario_imports_nothing_that_starts_or_kills_processes() -> None:
    assert offenders("bubbleup.scenario", PROCESS_MODULES) == {}
    assert offenders("bubbleup.pressure.budget_spec", PROCESS_MODULES) == {}
    assert offenders("bubbleup.sweep.plan", PROCESS_MODULES) == {}


def test_pressure_knows_nothing_of_workloads_runs_or_results() -> None:
    forbidden = ("workloads", "bubbleup.sweep", "bubbleup.store", "bubbleup.analysis", "bubbleup.report")
    assert offenders("bubbleup.pressure", forbidden) == {}


def test_machine_knows_nothing_of_sweeps_results_or_reports() -> None:
    """Facts about the machine (environment, telemetry, calibration, lock) are read by a run, never the other way
    round: the dial check, a sweep, and the reporter's curve, a run's result, live above (dial_check, colocation)."""
    forbidden = ("bubbleup.sweep", "bubbleup.api", "bubbleup.analysis", "bubbleup.report", "bubbleup.colocation")
    assert offenders("bubbleup.machine", forbidden) == {}


def test_workloads_do_not_import_the_harness() -> None:
    assert offenders("workloads", ("bubbleup",)) == {}


def test_no_module_is_over_500_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}


BLOCK_TF = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
"""


def test_the_harness_imports_and_reads_a_scenario_without_tensorflow() -> None:
    code = BLOCK_TF + (
        "import bubbleup, bubbleup.analysis, bubbleup.report.html, bubbleup.sweep.orchestrator\n"
        "from bubbleup.scenario import load_scenario\n"
        "load_scenario('scenarios/smoke.yaml')\n"
        "bubbleup.load_run('tests/data/run-schema1')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('heavy', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "heavy []" in done.stdout


def test_reading_a_scenario_loads_no_process_code() -> None:
    code = (
        "import sys\nfrom bubbleup.scenario import load_scenario\n"
        "load_scenario('scenarios/synthetic-budget.yaml')\n"
        f"print(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in {PROCESS_MODULES!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
