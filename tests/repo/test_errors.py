"""One root for the project's exceptions, one `errors.py` per package, no two classes alike.

`except PipelineError` is how an entry point turns any error raised on purpose into one clear
line; an exception outside that root escapes it as a traceback. A class name used twice
(two `Job`s, two `Runner`s) makes a reader, a log line or a stack trace ambiguous.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections import defaultdict
from pathlib import Path

from pipeline.errors import PipelineError
from tests.support.repo import PACKAGES, REPO

# Private (`_Name`) classes are internal signals and exempt.


def project_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a project module, by `module.Name`."""
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name.rsplit(".", 1)[-1] == "__main__" or ".examples" in info.name:
                continue
            if ".migrations" in info.name:
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (
                    inspect.isclass(value)
                    and issubclass(value, BaseException)
                    and value.__module__ == info.name
                    and not name.startswith("_")
                ):
                    found[f"{info.name}.{name}"] = value
    return found


def test_every_project_exception_is_under_the_root():
    outside = {
        name for name, cls in project_exceptions().items() if not issubclass(cls, PipelineError)
    }
    assert not outside, f"derive these from pipeline.errors.PipelineError: {sorted(outside)}"


def test_exceptions_live_in_their_package_errors_module():
    misplaced = {name for name in project_exceptions() if name.rsplit(".", 2)[-2] != "errors"}
    assert not misplaced, f"define these in the package's errors.py: {sorted(misplaced)}"


def class_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def test_no_two_classes_of_the_project_share_a_name():
    where: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for name in class_names(path):
                where[name].append(str(path.relative_to(REPO)))
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not shared, f"rename one of each: {shared}"
