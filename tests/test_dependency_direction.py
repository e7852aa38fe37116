"""The dependency direction of docs/architecture.md, checked on every import of every package.

`dashboard` → `scheduler` → plumbing; `convert` → `histograms` → plumbing; `ingest`,
`mapreduce` → plumbing; `aggregates` → `histograms`, `mapreduce` → plumbing, and the dashboard
reads the aggregates through `aggregates`. The plumbing package imports no service, and the edge never parses.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = {"ingest", "convert", "mapreduce", "scheduler", "dashboard", "histograms", "aggregates"}
ALLOWED = {
    "pipeline": set(),
    "histograms": set(),
    "ingest": set(),
    "mapreduce": set(),
    "convert": {"histograms"},
    "scheduler": set(),
    "aggregates": {"histograms", "mapreduce"},
    "dashboard": {"scheduler", "aggregates"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_design_allows(package):
    wrong = {}
    for path in sorted((REPO / package).rglob("*.py")):
        other = (imported_packages(path) & SERVICES) - {package} - ALLOWED[package]
        if other:
            wrong[str(path.relative_to(REPO))] = sorted(other)
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package]) or 'plumbing'}: {wrong}"
