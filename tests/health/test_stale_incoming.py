"""The stale-incoming alert counts batches waiting for conversion, not the raw copies of
records already published unvalidated, which wait hours for re-validation by design."""

from __future__ import annotations

import datetime as dt

from health.stale_incoming import read_stale_incoming
from pipeline.stores import open_store


def test_unvalidated_stashes_are_not_stale_batches(settings):
    incoming = open_store(settings.incoming_url, create=True)
    incoming.put("20261206/120000-host-1-abc.batch", b"x")
    incoming.put("parked/20261206_120000-host-1-def-p1.tpr", b"x")
    incoming.put("unvalidated/20261206_120000-host-1-ghi.tpr", b"x")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=settings.stale_incoming_minutes + 5)
    stale = read_stale_incoming(settings, later)
    assert sorted(info.key for info in stale) == [
        "20261206/120000-host-1-abc.batch",
        "parked/20261206_120000-host-1-def-p1.tpr",
    ]
