"""Which submission paths the edge accepts (pure functions, no server)."""

from __future__ import annotations

import itertools

import pytest

from ingest.paths import BadSubmissionPath, _parse_slowly, parse_submission

DOC = "17caa68c-25f5-450a-9cce-7d31318846d8"


@pytest.mark.parametrize(
    ("path", "namespace", "doc_type", "channel"),
    [
        (f"/submit/telemetry/{DOC}", "telemetry", None, None),
        (
            f"/submit/telemetry/{DOC}/idle-daily/Firefox/23.0.1/release/20130814063812",
            "telemetry",
            "idle-daily",
            "release",
        ),
        (f"/submit/firefox-desktop/metrics/1/{DOC}", "firefox-desktop", "metrics", None),
    ],
)
def test_parse_submission_accepts_the_documented_forms(path, namespace, doc_type, channel):
    parsed = parse_submission(path)
    assert (parsed.namespace, parsed.doc_id, parsed.doc_type, parsed.channel) == (
        namespace,
        DOC,
        doc_type,
        channel,
    )


@pytest.mark.parametrize(
    "path",
    [
        "/submit/telemetry/",
        "/submit/telemetry/xyz",
        f"/submit/telemetry/{DOC}/a/b/c/d/",
        f"/submit/x/y/1/{DOC}/z",
        f"/submit/telemetry/{DOC}/a//c/d/e",
        "/other/telemetry/" + DOC,
    ],
)
def test_parse_submission_rejects_other_shapes(path):
    with pytest.raises(BadSubmissionPath):
        parse_submission(path)


def test_fast_path_parser_agrees_with_the_step_by_step_parser():
    segments = [
        "",
        "a",
        "main",
        "x y",
        "A.b-c_d+e%20",
        "a" * 101,
        DOC,
        DOC.upper(),
        "1",
        "one",
        "telemetry",
        "Firefox-desktop",
        "firefox-desktop",
    ]
    checked = 0
    for count in range(1, 8):
        for combo in itertools.product(segments, repeat=min(count, 3)):
            for tail in ("", "/"):
                path = "/submit/" + "/".join([*combo, *[DOC] * (count - len(combo))]) + tail
                outcomes = []
                for parse in (parse_submission, _parse_slowly):
                    try:
                        outcomes.append(parse(path))
                    except BadSubmissionPath:
                        outcomes.append("rejected")
                assert outcomes[0] == outcomes[1], path
                checked += 1
    assert checked > 10_000
