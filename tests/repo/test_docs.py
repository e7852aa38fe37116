"""The design lives in the repository (docs/) and nothing points at notes outside it.

A comment that cites a file the repository does not hold cannot be checked or kept true, and a
newcomer cannot follow it. These tests fail when a tracked file cites such a design note or a
path beside the checkout, and when docs/architecture.md's package table no longer matches the
tree.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

# Names of design notes that live outside the repository; assembled so that this file does
# not match itself.
OUTSIDE_NOTES = ("DESIGN" + ".md", "STYLE" + ".md")
OUTSIDE_PATHS = (".." + "/shared", "/work" + "/")
# The real Mozilla fixtures and the node.js anchor harness are read in place beside the
# checkout: the test fixtures loader, the demo data of `make run`, the ingest-vs-node
# benchmark, and the README that tells where to put them name that place.
FIXTURE_LOCATION_USERS = {
    "tests/conftest.py",
    "README.md",
    "launcher/demo.py",
    "bench/ingest_vs_node.py",
}


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [
        name
        for name in listed.split("\0")
        if name and not name.startswith("docs/screenshots/") and (REPO / name).is_file()
    ]


def read_text(name: str) -> str | None:
    try:
        return (REPO / name).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary files cite nothing


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    return {
        name: text
        for name in tracked_text_files()
        if name != "tests/repo/test_docs.py" and (text := read_text(name)) is not None
    }


def outside_citations(texts: dict[str, str]) -> dict[str, str]:
    """File -> the first outside note or path it cites (fixture-location users may name theirs)."""
    found: dict[str, str] = {}
    for name, text in texts.items():
        needles = OUTSIDE_NOTES + (() if name in FIXTURE_LOCATION_USERS else OUTSIDE_PATHS)
        cited = [needle for needle in needles if needle in text]
        if cited:
            found[name] = cited[0]
    return found


def test_no_file_cites_anything_outside_the_repository(texts):
    assert len(texts) > 100  # the scan reads the tree, not nothing
    assert not outside_citations(texts), "cite docs/ instead"


def test_the_scan_finds_each_kind_of_citation():
    samples = {
        "a.py": "see " + OUTSIDE_NOTES[0] + ' "Incoming batches"',
        "b.py": "fixtures in " + OUTSIDE_PATHS[0] + "/fixtures",
        "tests/conftest.py": "fixtures in " + OUTSIDE_PATHS[0] + "/fixtures",
        "c.md": "nothing outside",
    }
    assert outside_citations(samples) == {"a.py": OUTSIDE_NOTES[0], "b.py": OUTSIDE_PATHS[0]}


def architecture_packages() -> set[str]:
    """The packages named in the first column of docs/architecture.md's package table."""
    text = (DOCS / "architecture.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)/` \|", text, re.MULTILINE))


def top_level_packages() -> set[str]:
    return {
        path.parent.name
        for path in REPO.glob("*/__init__.py")
        if path.parent.name not in {"tests", "bench"}
    }


def test_architecture_lists_every_package_of_the_tree():
    assert architecture_packages() == top_level_packages()


def test_docs_index_links_resolve():
    text = (DOCS / "README.md").read_text() + (DOCS / "architecture.md").read_text()
    for target in re.findall(r"\]\(([a-z_]+\.md)(?:#[a-z0-9-]*)?\)", text):
        assert (DOCS / target).is_file(), target
