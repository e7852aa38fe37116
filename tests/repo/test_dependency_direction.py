"""The dependency direction of docs/architecture.md, checked on every import of every package.

`dashboard` → `scheduler`, `health` → plumbing; `convert` → `histograms` → plumbing; `ingest`,
`mapreduce` → plumbing; `aggregates` → `histograms`, `mapreduce` → plumbing, and the dashboard
reads the aggregates through `aggregates`. The plumbing package imports no service, and the edge
never parses. The launcher sits above everything. A module started by name (`[python, "-m",
"convert"]`, `runpy.run_module("convert")`, `importlib.import_module("convert")`) depends on
it as much as an import does, so such launches count as imports here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = {
    "ingest",
    "convert",
    "mapreduce",
    "scheduler",
    "dashboard",
    "histograms",
    "aggregates",
    "health",
    "launcher",
}
ALLOWED = {
    "pipeline": set(),
    "histograms": set(),
    "ingest": set(),
    "mapreduce": set(),
    "convert": {"histograms"},
    "scheduler": set(),
    "aggregates": {"histograms", "mapreduce"},
    "health": set(),
    "dashboard": {"scheduler", "aggregates", "health"},
    "launcher": SERVICES - {"launcher"},
}
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
LOADERS = {"run_module", "import_module", "run_path"}


def launched_modules(tree: ast.AST) -> set[str]:
    """Modules a file starts by name: `"-m", "name"` in an argument list, or a loader call."""
    names: set[str] = set()
    for node in ast.walk(tree):
        items: list[ast.expr] = []
        if isinstance(node, (ast.List, ast.Tuple)):
            items = list(node.elts)
        elif isinstance(node, ast.Call):
            items = list(node.args)
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            if called in LOADERS and isinstance(first, ast.Constant):
                names.add(str(first.value))
        for flag, name in zip(items, items[1:], strict=False):
            if (
                isinstance(flag, ast.Constant)
                and flag.value == "-m"
                and isinstance(name, ast.Constant)
                and isinstance(name.value, str)
                and MODULE_NAME.fullmatch(name.value)
            ):
                names.add(name.value)
    return names


def imported_packages(path: Path) -> set[str]:
    return packages_used(path.read_text(), str(path))


def packages_used(source: str, filename: str = "<source>") -> set[str]:
    """Top-level packages a module imports or launches by name."""
    tree = ast.parse(source, filename)
    names: set[str] = {name.split(".")[0] for name in launched_modules(tree)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_a_module_launched_by_name_counts_as_an_import():
    source = """
import runpy, importlib, subprocess, sys
subprocess.Popen([sys.executable, "-m", "convert", "--workers", "2"])
argv = (sys.executable, "-m", "health.simulate")
runpy.run_module("ingest", run_name="__main__")
importlib.import_module("dashboard.server")
parser.add_argument("-m", "--num-mappers")
cmd = [sys.executable, "-m", str(module)]
"""
    assert packages_used(source) & SERVICES == {"convert", "health", "ingest", "dashboard"}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_design_allows(package):
    wrong = {}
    for path in sorted((REPO / package).rglob("*.py")):
        other = (imported_packages(path) & SERVICES) - {package} - ALLOWED[package]
        if other:
            wrong[str(path.relative_to(REPO))] = sorted(other)
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package]) or 'plumbing'}: {wrong}"
