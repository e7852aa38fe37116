"""Settings come from one place: no module outside the config modules reads `os.environ`.

A new `os.environ.get("TELEMETRY_...")` elsewhere would be a setting with no type, no range
check, no TOML key and no line in `python -m pipeline config`; declare it in
pipeline/config.py (or the scheduler's or dashboard's section) instead. The allow-list holds
the variables that are not settings: ones a library or the job contract owns.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.repo import PACKAGES, REPO

ENVIRON_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}

ALLOWED = {
    # the settings machinery itself (and `--config`, which hands the file on to child processes)
    "pipeline/config.py": "settings",
    # prometheus_client's PROMETHEUS_MULTIPROC_DIR: the library's variable, set for gunicorn
    "dashboard/server.py": "PROMETHEUS_MULTIPROC_DIR",
    "dashboard/metrics.py": "PROMETHEUS_MULTIPROC_DIR",
    # the wheel build's own flag (setup.py's TELEMETRY_PURE_WHEEL) on a child's environment
    "dashboard/workers/wheel.py": "build environment",
    # the services runall starts inherit its environment
    "launcher/runall.py": "child environment",
    # the sandbox probe writes where the OS says temporary files go
    "scheduler/sandbox.py": "TMPDIR",
    # the job contract: what a scheduled job reads inside its sandbox (JOB_NAME, OUTPUT_DIR...)
    "aggregates/__main__.py": "JOB_NAME",
    "scheduler/examples/summary_job/summarise.py": "job contract",
}


def environ_uses(path: Path) -> list[int]:
    """Line numbers where `path` touches the process environment through `os`."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ENVIRON_NAMES
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ENVIRON_NAMES for alias in node.names):
                lines.append(node.lineno)
    return lines


def test_only_the_config_modules_read_the_environment():
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative in ALLOWED:
                continue
            lines = environ_uses(path)
            if lines:
                found[relative] = lines
    assert found == {}, (
        f"os.environ read outside the config modules: {found}; declare a setting in "
        "pipeline/config.py (or scheduler/config.py, dashboard/config.py) instead"
    )


def test_the_allow_list_holds_only_modules_that_still_need_it():
    stale = [
        path for path in ALLOWED if not (REPO / path).exists() or not environ_uses(REPO / path)
    ]
    assert stale == []


def test_the_scan_finds_every_form(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nfrom os import getenv\nos.environ.get('A')\nos.getenv('B')\nx = os.environ\n"
    )
    assert sorted(environ_uses(module)) == [2, 3, 4, 5]
