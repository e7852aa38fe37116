"""Production code reads no test-only environment variable.

A hook such as `TELEMETRY_CONVERT_TEST_PAUSE` (a worker that stops forever mid-batch when a
variable is set) is production code that exists only for the tests and can be switched on in
production by mistake. Tests stage such points from their side instead (see
tests/support/paused_convert.py). This scan fails when a production module names an
environment variable with TEST, TESTS or TESTING as one of its underscore-separated words
in a call that reads the environment, directly or through a module-level constant.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.repo import PACKAGES, REPO

TEST_WORDS = {"TEST", "TESTS", "TESTING"}
ENV_READERS = {"os.environ.get", "environ.get", "os.getenv", "getenv", "os.environ.pop"}


def is_test_name(value: object) -> bool:
    return isinstance(value, str) and bool(TEST_WORDS & set(value.upper().split("_")))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def hook_env_reads(source: str) -> list[str]:
    """Names of test-only environment variables that `source` reads (empty when none)."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def value_of(node: ast.AST) -> object:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    found = []
    for node in ast.walk(tree):
        keys: list[ast.AST] = []
        if isinstance(node, ast.Call) and dotted(node.func) in ENV_READERS and node.args:
            keys = [node.args[0]]
        elif isinstance(node, ast.Subscript) and dotted(node.value).endswith("environ"):
            keys = [node.slice]
        elif isinstance(node, ast.Compare) and any(
            dotted(c).endswith("environ") for c in node.comparators
        ):
            keys = [node.left]
        found += [str(value_of(key)) for key in keys if is_test_name(value_of(key))]
    return found


def production_modules() -> list[Path]:
    return [path for package in PACKAGES for path in (REPO / package).rglob("*.py")]


def test_production_code_reads_no_test_environment_variable():
    modules = production_modules()
    assert len(modules) > 50  # the scan reads the packages, not nothing
    offenders = {
        str(path.relative_to(REPO)): names
        for path in modules
        if (names := hook_env_reads(path.read_text(encoding="utf-8")))
    }
    assert not offenders, "stage test-only behaviour from the tests (tests/support), not here"


def test_the_scan_finds_each_way_of_reading_the_environment():
    sources = {
        'PAUSE = "TELEMETRY_CONVERT_TEST_PAUSE"\nos.environ.get(PAUSE)': [
            "TELEMETRY_CONVERT_TEST_PAUSE"
        ],
        'os.getenv("X_TESTING")': ["X_TESTING"],
        'os.environ["TEST_MODE"]': ["TEST_MODE"],
        'if "RUN_TESTS" in os.environ: pass': ["RUN_TESTS"],
        'os.environ.get("TELEMETRY_LATEST")': [],
        'os.environ.get("TELEMETRY_DATA_DIR")': [],
        'log.info("TEST_THING")': [],
    }
    assert {source: hook_env_reads(source) for source in sources} == sources
