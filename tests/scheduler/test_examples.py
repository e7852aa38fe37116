"""The example job's committed tarball is exactly what its source directory packs into."""

from __future__ import annotations

import tarfile

from scheduler.examples.build import SOURCE, TARBALL, tarball_bytes


def test_committed_tarball_matches_the_source_directory():
    assert TARBALL.read_bytes() == tarball_bytes(SOURCE), (
        "scheduler/examples/summary-job.tar.gz is stale: run "
        "python -m scheduler.examples.build scheduler/examples/summary-job.tar.gz"
    )


def test_build_is_reproducible_and_holds_the_job(tmp_path):
    assert tarball_bytes() == tarball_bytes()
    with tarfile.open(TARBALL) as archive:
        members = {member.name: member for member in archive.getmembers()}
    assert "summarise.py" in members
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members.values())
