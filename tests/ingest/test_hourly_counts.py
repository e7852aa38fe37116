"""Ingest's hourly counts keep bounded labels: made-up namespaces and doc types are OTHER."""

from __future__ import annotations

from ingest.hourly_counts import HourlyCounts
from ingest.paths import parse_submission
from pipeline.allow_list import AllowList

DOC = "0d0d0d0d-0000-4000-8000-000000000001"


def test_generic_labels_come_from_the_allow_list():
    counts = HourlyCounts("sqlite://", allow_list=AllowList.parse("myapp/*"))
    for i in range(1000):
        counts.add(0, parse_submission(f"/submit/ns{i}/dt{i}/1/{DOC}"))
    counts.add(0, parse_submission(f"/submit/firefox-desktop/baseline/1/{DOC}"))
    counts.add(0, parse_submission(f"/submit/myapp/anything/1/{DOC}"))
    assert dict(counts._counts) == {
        (0, "UNKNOWN", "OTHER"): 1000,
        (0, "UNKNOWN", "firefox-desktop.baseline"): 1,
        (0, "UNKNOWN", "myapp.OTHER"): 1,
    }
