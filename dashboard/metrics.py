"""The dashboard's Prometheus metrics and health endpoints.

  /metrics           requests by endpoint and status, latency; only for scrapers from
                     TELEMETRY_DASHBOARD_METRICS_ALLOW networks or with `Authorization:
                     Bearer TELEMETRY_DASHBOARD_METRICS_TOKEN` (403 for anyone else: the endpoint names and
                     counts are not for the public)
  /__lbheartbeat__   200 while the process runs
  /__heartbeat__     200 when the database answers, else 500 (JSON body as pipeline.metrics)

Endpoint labels are Flask endpoint names (a fixed set), never raw paths, and made-up methods
are counted as "other", so a scanner cannot create new series. Under gunicorn with several worker processes the counts are kept in
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by dashboard.wsgi), so
any worker answers a scrape with the total.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess
from sqlalchemy import text

from pipeline.errors import ConfigError
from pipeline.metrics import CONTENT_TYPE, new_registry, render, run_checks

EXTENSION = "telemetry_metrics"
ALLOW_SETTING = "TELEMETRY_DASHBOARD_METRICS_ALLOW"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method labels kept as sent; any other method a client makes up is counted as "other"."""


def parse_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """TELEMETRY_DASHBOARD_METRICS_ALLOW: comma-separated addresses or networks (CIDR)."""
    networks = []
    for item in value.split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(ALLOW_SETTING, f"not a network: {item!r}") from exc
    return networks


def may_scrape(
    remote_addr: str | None,
    authorization: str | None,
    networks: list,
    token: str,
) -> bool:
    """True for a request with the right bearer token, or from an allowed network."""
    if token and authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
            return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


class DashboardMetrics:
    def __init__(self, allow: str, token: str) -> None:
        self.networks = parse_networks(allow)
        self.token = token
        self.registry = new_registry()
        self.requests = Counter(
            "dashboard_requests",
            "HTTP requests answered, by endpoint, method and status code",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dashboard_request_seconds",
            "Time to answer a request, by endpoint",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.expiry_sweeper = Gauge(
            "dashboard_expiry_sweeper_running",
            "1 in the process that runs the worker-expiry sweep (there must be one: the server's "
            "master, never a worker)",
            registry=self.registry,
            multiprocess_mode="liveall",
        )

    def scrape_registry(self) -> CollectorRegistry:
        """This process's registry, or every gunicorn worker's counts in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(combined)
            return combined
        return self.registry


def init_app(app: Flask) -> None:
    """Count every request and add the metrics and health endpoints (who may scrape: the
    METRICS_ALLOW and METRICS_TOKEN keys of the dashboard's section)."""
    metrics = DashboardMetrics(app.config["METRICS_ALLOW"], app.config["METRICS_TOKEN"])
    app.extensions[EXTENSION] = metrics

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        endpoint = request.endpoint or "unmatched"
        method = request.method if request.method in METHODS else "other"
        metrics.requests.labels(endpoint, method, str(response.status_code)).inc()
        if started is not None:
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    app.add_url_rule("/metrics", "metrics", _metrics)
    app.add_url_rule("/__lbheartbeat__", "lbheartbeat", _lbheartbeat)
    app.add_url_rule("/__heartbeat__", "heartbeat", _heartbeat)


def _metrics() -> Response:
    metrics: DashboardMetrics = current_app.extensions[EXTENSION]
    allowed = may_scrape(
        request.remote_addr, request.headers.get("Authorization"), metrics.networks, metrics.token
    )
    if not allowed:
        return Response(
            "forbidden: scrape from TELEMETRY_DASHBOARD_METRICS_ALLOW or with the bearer "
            "token TELEMETRY_DASHBOARD_METRICS_TOKEN\n",
            status=403,
            mimetype="text/plain",
        )
    return Response(render(metrics.scrape_registry()), headers={"Content-Type": CONTENT_TYPE})


def _lbheartbeat() -> Response:
    return Response("OK\n", mimetype="text/plain")


def _heartbeat() -> tuple[dict, int]:
    from dashboard import database

    def check_database() -> None:
        with database.state().engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    ok, body = run_checks({"database": check_database})
    return body, 200 if ok else 500
