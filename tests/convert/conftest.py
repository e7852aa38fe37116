"""Fixtures of the convert tests."""

from __future__ import annotations

import pytest

from tests.support.convert import HgStub


@pytest.fixture
def hg():
    """A real HTTP server standing in for hg.mozilla.org (see HgStub)."""
    stub = HgStub()
    yield stub
    stub.stop()
