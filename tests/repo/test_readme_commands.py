"""The README's commands, run as written: the MapReduce examples from another directory (an
analysis worker's), the first-user command, and the `make run` ARGS lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent


def code_blocks(after_heading: str) -> list[str]:
    section = README[README.index(after_heading) :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_mapreduce_examples_run_as_written_from_another_directory(tmp_path):
    """Before: bare `python` and `mapreduce/examples/...` paths relative to the checkout."""
    from mapreduce import synthetic
    from pipeline.stores import open_store

    block = code_blocks("## MapReduce")[0]  # the examples; later blocks show the analyst tools
    assert "EX=$(python -m mapreduce.examples)" in block
    published = tmp_path / "published"
    synthetic.generate(open_store(f"file://{published}", create=True), 200_000, files=4)
    lines = [line for line in block.splitlines() if "--engine dask" not in line]  # no cluster
    script = "\n".join(lines).replace(". .venv/bin/activate", f". {VENV_BIN}/activate")
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/bin:/bin"  # no virtualenv on PATH until the README activates it
    env["TELEMETRY_PUBLISHED_URL"] = f"file://{published}"
    env["TELEMETRY_DATA_DIR"] = str(tmp_path / "var")
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=worker_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for output in ("counts.txt", "os.txt", "gc_ms.txt"):
        assert (worker_dir / output).is_file(), output
    assert (worker_dir / "counts.txt").read_text().strip()


def test_examples_module_prints_absolute_paths(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mapreduce.examples", "simple_counter.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    path = Path(done.stdout.strip())
    assert path.is_absolute() and path.is_file()
    missing = subprocess.run(
        [sys.executable, "-m", "mapreduce.examples", "nope.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "needle",
    [
        ".venv/bin/python -m dashboard create-user you@example.com",
        'make run ARGS="--no-demo"',
        'make run ARGS="--ingest-port 8081 --dashboard-port 5001"',
    ],
)
def test_first_hour_commands_are_in_the_readme(needle):
    assert needle in README
