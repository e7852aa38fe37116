"""The dashboard's /metrics (restricted) and health endpoints, after a signed-in page view."""

from __future__ import annotations

import pytest

from dashboard.metrics import may_scrape, parse_networks
from pipeline.errors import ConfigError
from tests.support.dashboard import add_user, sign_in
from tests.support.metrics import parse, value

OUTSIDER = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def app_config() -> dict:
    return {"METRICS_TOKEN": "s3cret-token"}


def test_scrape_after_a_signed_in_page_view_counts_it_by_endpoint_and_status(app):
    client = app.test_client()
    add_user(app, "ann@example.com")
    assert sign_in(client, "ann@example.com").status_code == 302
    assert client.get("/jobs").status_code == 200
    assert client.get("/jobs").status_code == 200
    assert client.get("/no/such/page").status_code == 404

    response = client.get("/metrics")
    assert response.status_code == 200
    samples = parse(response.get_data(as_text=True))
    assert (
        value(
            samples,
            "dashboard_requests_total",
            endpoint="jobs.list_jobs",
            method="GET",
            status="200",
        )
        == 2
    )
    assert (
        value(
            samples, "dashboard_requests_total", endpoint="auth.login", method="POST", status="302"
        )
        == 1
    )
    assert (
        value(samples, "dashboard_requests_total", endpoint="unmatched", method="GET", status="404")
        == 1
    )
    assert value(samples, "dashboard_request_seconds_count", endpoint="jobs.list_jobs") == 2


def test_made_up_paths_and_methods_cannot_create_new_series(app):
    client = app.test_client()
    for i in range(20):
        client.open(f"/scan/{i}", method=f"X{i}")
    samples = parse(client.get("/metrics").get_data(as_text=True))
    requests = {
        labels: v for (name, labels), v in samples.items() if name == "dashboard_requests_total"
    }
    assert requests == {
        frozenset({("endpoint", "unmatched"), ("method", "other"), ("status", "404")}): 20
    }


def test_metrics_are_refused_to_outsiders_without_the_token(app):
    client = app.test_client()
    refused = client.get("/metrics", environ_base=OUTSIDER)
    assert refused.status_code == 403
    assert b"dashboard_requests" not in refused.data
    wrong = client.get("/metrics", environ_base=OUTSIDER, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 403
    allowed = client.get(
        "/metrics", environ_base=OUTSIDER, headers={"Authorization": "Bearer s3cret-token"}
    )
    assert allowed.status_code == 200 and b"dashboard_requests_total" in allowed.data


def test_without_a_token_only_the_allowed_networks_may_scrape():
    networks = parse_networks("10.0.0.0/8, ::1")
    assert may_scrape("10.1.2.3", None, networks, "")
    assert may_scrape("::1", None, networks, "")
    assert not may_scrape("127.0.0.1", None, networks, "")
    assert not may_scrape("203.0.113.9", "Bearer ", networks, "")  # empty token never matches
    assert not may_scrape(None, None, networks, "")
    with pytest.raises(ConfigError, match="TELEMETRY_DASHBOARD_METRICS_ALLOW"):
        parse_networks("10.0.0.0/8,nonsense")


def test_health_endpoints_answer_without_sign_in(app):
    client = app.test_client()
    assert client.get("/__lbheartbeat__").status_code == 200
    response = client.get("/__heartbeat__", environ_base=OUTSIDER)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok"}}


def test_heartbeat_is_500_when_the_database_is_unusable(app, tmp_path):
    from sqlalchemy import create_engine

    from dashboard import database

    with app.app_context():  # as if the database went away: its directory does not exist
        database.state().engine = create_engine(f"sqlite:///{tmp_path}/gone/app.db")
    response = app.test_client().get("/__heartbeat__")
    assert response.status_code == 500
    body = response.get_json()
    assert body["status"] == "error" and body["checks"]["database"].startswith("OperationalError")
