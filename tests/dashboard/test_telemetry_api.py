"""The aggregates API answers the real Firefox 23 submission with exactly its histograms, on the
bucket bounds of the reference layout; filters, ranges, evolution and errors."""

from __future__ import annotations

import json

import pytest

from dashboard import create_app
from histograms.buckets import KIND_CODES
from tests.support.aggregates_data import publish_builds, publish_firefox23


@pytest.fixture
def firefox23(settings, shared_fixtures, tmp_path):
    """The real idle-daily payload converted, published three times (two dates), aggregated."""
    return publish_firefox23(settings, shared_fixtures, tmp_path)


@pytest.fixture
def app_config() -> dict:
    return {"AGGREGATES_SYNC_SECONDS": 0}


def test_histograms_of_the_real_payload_match_the_reference_layout(
    firefox23, client, shared_fixtures
):
    reference = json.loads((shared_fixtures / "histograms/a55c55edf302.buckets.json").read_text())
    checked = 0
    for name, histogram in firefox23["histograms"].items():
        expected = reference["histograms"].get(name)
        if expected is None:
            continue  # not in the revision (or a layout the reference leaves out)
        response = client.get(
            f"/telemetry/api/v1/histogram?metric={name}&channel=release&version=23.0.1"
            "&dates=20261201"
        )
        assert response.status_code == 200, (name, response.get_json())
        answer = response.get_json()
        counts = [histogram["values"].get(str(bound), 0) for bound in expected["buckets"]]
        assert answer["metric"] == name
        assert answer["buckets"] == expected["buckets"], name
        assert KIND_CODES[answer["kind"]] == int(expected["kind"]), name
        assert answer["counts"] == counts, name
        assert answer["submissions"] == 1
        assert answer["sum"] == histogram["sum"], name
        checked += 1
    assert checked > 250  # nearly all of the payload's 328 histograms


def test_dates_versions_and_dimensions_select_and_sum(firefox23, client):
    gc = firefox23["histograms"]["GC_MS"]
    url = "/telemetry/api/v1/histogram?metric=GC_MS&channel=release&version=23.0.1"
    assert client.get(url).get_json()["submissions"] == 3
    assert client.get(url + "&dates=20261201..20261202").get_json()["sum"] == 3 * gc["sum"]
    assert client.get(url + "&dates=20261202").get_json()["submissions"] == 2
    assert client.get(url + "&os=WINNT&build_id=20130815000000").get_json()["submissions"] == 2
    assert client.get(url + "&os=Darwin").status_code == 404
    assert client.get(url.replace("version=23.0.1", "version=20..30")).status_code == 200
    uptime = client.get(url.replace("GC_MS", "SIMPLE_MEASURES_UPTIME")).get_json()
    assert uptime["submissions"] == 3 and uptime["sum"] == 3 * 123


def test_filters_list_what_the_aggregates_hold(firefox23, client):
    filters = client.get("/telemetry/api/v1/filters").get_json()
    assert filters["channels"] == ["release"]
    assert filters["versions"] == {"release": ["23.0.1"]}
    assert filters["dimensions"]["os"] == ["WINNT"]
    assert filters["dimensions"]["build_id"] == ["20130814063812", "20130815000000"]
    assert filters["dates"] == ["20261201", "20261202"]
    described = {m["name"]: m["description"] for m in filters["metrics"]}
    assert described["GC_MS"] == "Time spent running JS GC (ms)"


def test_evolution_has_one_point_per_build_and_per_date(firefox23, client):
    base = "/telemetry/api/v1/evolution?metric=GC_MS&channel=release"
    by_build = client.get(base).get_json()
    assert [p["build_id"] for p in by_build["points"]] == ["20130814063812", "20130815000000"]
    assert [p["submissions"] for p in by_build["points"]] == [1, 2]
    first, second = by_build["points"]
    assert first["percentiles"] == second["percentiles"]  # the same payload: no shift
    assert second["regression"] is None
    by_date = client.get(base + "&by=submission_date&version=23.0.1").get_json()
    assert [p["submission_date"] for p in by_date["points"]] == ["20261201", "20261202"]


@pytest.mark.parametrize(
    "query, message",
    [
        ("histogram?channel=release&version=1", "metric is required"),
        ("histogram?metric=GC_MS&version=1", "channel is required"),
        ("histogram?metric=GC_MS&channel=release", "version is required"),
        ("histogram?metric=GC_MS&channel=release&version=1&dates=2026-13-01", "dates"),
        ("evolution?metric=GC_MS&channel=release&by=week", "by must be"),
    ],
)
def test_bad_queries_get_400_with_the_reason(client, query, message):
    response = client.get(f"/telemetry/api/v1/{query}")
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_api_and_pages_need_no_sign_in(client):
    assert client.get("/telemetry/api/v1/filters").status_code == 200
    for page in ("/telemetry/dist", "/telemetry/evo"):
        response = client.get(page)
        assert response.status_code == 200
        assert "<script>" not in response.get_data(as_text=True)  # CSP-ready: files only


def test_keyed_and_child_process_histograms_of_the_real_esr_ping(
    settings, shared_fixtures, tmp_path
):
    """The real ESR 153 `main` ping: parent, keyed (`NAME[key]`) and content-process
    (`content/NAME`) histograms each answer exactly their values on their layout."""
    from aggregates import jobrun
    from histograms.convert import convert_payload
    from histograms.definitions import load_definitions
    from mapreduce.synthetic import write_partition
    from pipeline.stores import open_store
    from pipeline.system_jobs import AGGREGATES_JOB
    from tests.support.aggregates_data import publish_job_output, seed_esr_revision

    definitions = load_definitions(seed_esr_revision(settings.histogram_cache, shared_fixtures))
    ping = json.loads((shared_fixtures / "firefox/main-ping-esr153.json").read_text())
    dims = {
        "reason": "main", "appName": "Firefox", "appUpdateChannel": "esr",
        "appVersion": "153.7.0", "appBuildID": "20261103151912", "submission_date": "20261201",
    }  # fmt: skip
    line = json.dumps(convert_payload(ping, definitions).payload)
    write_partition(open_store(settings.published_url), dims, "x", [("d0c1d", line)])
    output = tmp_path / "out"
    jobrun.run(settings, output, AGGREGATES_JOB, mappers=1)
    publish_job_output(output, open_store(settings.public_url))
    client = create_app(settings, {"AGGREGATES_SYNC_SECONDS": 0}).test_client()

    payload = ping["payload"]
    cases = [(name, h) for name, h in payload["histograms"].items()]
    cases += [
        (f"{name}[{key}]", h)
        for name, by_key in payload["keyedHistograms"].items()
        for key, h in by_key.items()
    ]
    cases += [(f"content/{n}", h) for n, h in payload["processes"]["content"]["histograms"].items()]
    # the stand-in revision does not define every histogram: those are left out, as convert does
    cases = [(n, h) for n, h in cases if n.split("/")[-1].split("[")[0] in definitions]
    assert any("[" in name for name, _ in cases) and any("/" in name for name, _ in cases)
    for name, histogram in cases:
        base = name.split("/")[-1].split("[")[0]
        answer = client.get(
            "/telemetry/api/v1/histogram",
            query_string={"metric": name, "channel": "esr", "version": "153.7.0"},
        ).get_json()
        assert answer["buckets"] == list(definitions[base].buckets), name
        values = histogram["values"]
        assert answer["counts"] == [values.get(str(b), 0) for b in answer["buckets"]], name
        assert (answer["submissions"], answer["sum"]) == (1, histogram["sum"]), name


def test_evolution_flags_an_implausible_median_shift_between_builds(settings, client):
    spread = [50] * 20
    shifted = [0, 0, *([50] * 18)]  # the same shape two buckets up
    publish_builds(
        settings,
        {
            "20261101000000": (10_000, spread),
            "20261102000000": (10_000, spread),
            "20261103000000": (10_000, shifted),  # a regression
            "20261104000000": (4, spread),  # few submissions: a shift this size is plausible
        },
    )
    points = client.get(
        "/telemetry/api/v1/evolution?metric=PAGE_LOAD_MS&channel=nightly"
    ).get_json()["points"]
    flagged = [p["build_id"] for p in points if p["regression"]]
    assert flagged == ["20261103000000"]
    assert points[2]["regression"]["shift"] == 10.0
