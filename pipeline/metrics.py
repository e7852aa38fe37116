"""Prometheus metrics and health endpoints shared by every service.

Each service keeps its metrics on a registry of its own (not prometheus_client's global one),
so tests can run several services in one process and `/metrics` shows only what that service
reports. Services without an HTTP server of their own (convert, the scheduler, the health
watcher) serve the registry with `MetricsServer` on `--metrics-port`, beside the two health
endpoints load balancers and supervisors expect:

  /metrics           Prometheus text format
  /__lbheartbeat__   200 while the process runs
  /__heartbeat__     200 when every check passes, else 500; JSON body {"status", "checks"}

The HTTP server is prometheus_client's own WSGI app on the standard library's threading WSGI
server, in a daemon thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

Check = Callable[[], None]
"""A health check: returns when fine, raises with a message that says what is wrong."""


def new_registry() -> CollectorRegistry:
    """A private registry for one service."""
    return CollectorRegistry(auto_describe=True)


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format (serve it with CONTENT_TYPE)."""
    return generate_latest(registry)


def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, object]]:
    """Run every check; (all passed, the JSON body of `/__heartbeat__`)."""
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure is that check's answer
            first = str(exc).strip().splitlines()
            results[name] = f"{type(exc).__name__}: {first[0] if first else ''}"
        else:
            results[name] = "ok"
    ok = all(value == "ok" for value in results.values())
    return ok, {"status": "ok" if ok else "error", "checks": results}


class CallbackCollector(Collector):
    """Gauges computed when scraped, by one function that yields (name, help, labels, value).

    For values that live elsewhere (a queue's depth, rows in the database): reading them at
    scrape time keeps them true whichever process changed them. A failing read is logged and
    leaves those gauges out of that scrape rather than failing the whole scrape.
    """

    def __init__(
        self, read: Callable[[], Iterable[tuple[str, str, Mapping[str, str], float]]]
    ) -> None:
        self._read = read

    def describe(self) -> list:
        return []  # values are only known when scraped

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            samples = list(self._read())
        except Exception:  # noqa: BLE001 - one bad source must not fail the scrape
            log.warning("metrics: reading %s failed", self._read.__qualname__, exc_info=True)
            return []
        families: dict[str, GaugeMetricFamily] = {}
        for name, text, labels, value in samples:
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, text, labels=list(labels))
            family.add_metric([str(v) for v in labels.values()], value)
        return list(families.values())


def health_app(registry: CollectorRegistry, checks: Mapping[str, Check] | None = None) -> Callable:
    """A WSGI app serving /metrics, /__lbheartbeat__ and /__heartbeat__."""
    metrics = make_wsgi_app(registry)
    checks = dict(checks or {})

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/__lbheartbeat__":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"OK\n"]
        if path == "/__heartbeat__":
            ok, body = run_checks(checks)
            status = "200 OK" if ok else "500 Internal Server Error"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics, /__heartbeat__, /__lbheartbeat__\n"]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        log.debug("metrics: " + format, *args)


class MetricsServer:
    """Serve a registry and health checks on host:port in a daemon thread (port 0: any free)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        port: int,
        host: str = "127.0.0.1",
        checks: Mapping[str, Check] | None = None,
    ) -> None:
        self._server = make_server(
            host,
            port,
            health_app(registry, checks),
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-server", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics and health on http://%s:%s/metrics", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def bind_metrics(
    registry: CollectorRegistry,
    port: int | None,
    host: str = "127.0.0.1",
    checks: Mapping[str, Check] | None = None,
) -> MetricsServer | None:
    """A MetricsServer listening on host:port, not yet serving; None when `port` is None or 0
    (TELEMETRY_METRICS_PORT's default: metrics are off). A port that cannot be had is a
    ConfigError naming the setting, before the service starts any work."""
    if not port:
        return None
    try:
        return MetricsServer(registry, port, host, checks)
    except OSError as exc:
        raise ConfigError(
            "TELEMETRY_METRICS_PORT",
            f"cannot listen on {host}:{port} for metrics: {exc.strerror or exc}",
        ) from exc


def serve_metrics(
    registry: CollectorRegistry,
    port: int | None,
    host: str = "127.0.0.1",
    checks: Mapping[str, Check] | None = None,
) -> MetricsServer | None:
    """`bind_metrics`, then serve at once."""
    server = bind_metrics(registry, port, host, checks)
    return server.start() if server is not None else None
