"""Prometheus metrics of one ingest server, on a registry of its own (pipeline.metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from pipeline.metrics import CONTENT_TYPE, new_registry, render

MAX_NAMESPACES = (
    50  # label values come from clients; cap them so a scanner cannot explode the series
)
OTHER = "other"


class IngestMetrics:
    content_type = CONTENT_TYPE

    def __init__(self) -> None:
        self.registry = new_registry()
        self.requests = Counter(
            "ingest_requests",
            "HTTP requests answered, by status code and namespace",
            ["status", "namespace"],
            registry=self.registry,
        )
        self.body_bytes = Counter(
            "ingest_accepted_bytes",
            "Body bytes of accepted submissions, as received",
            ["namespace"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "ingest_rejections",
            "Requests refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.spool_bytes = Gauge(
            "ingest_spool_bytes",
            "Bytes spooled on local disk and not yet uploaded",
            registry=self.registry,
        )
        self.spool_files = Gauge(
            "ingest_spool_files",
            "Spool files (open and sealed) not yet uploaded",
            registry=self.registry,
        )
        self.upload_seconds = Histogram(
            "ingest_upload_seconds",
            "Time to upload one batch and announce it on the work queue",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.upload_failures = Counter(
            "ingest_upload_failures",
            "Failed upload or queue-send attempts (each is retried)",
            registry=self.registry,
        )
        self.uploaded_records = Counter(
            "ingest_uploaded_records",
            "Records in batches uploaded and announced",
            registry=self.registry,
        )
        self._namespaces: set[str] = set()
        self._request_children: dict[tuple[int, str | None], object] = {}
        self._bytes_children: dict[str, object] = {}

    def namespace_label(self, namespace: str | None) -> str:
        if not namespace:
            return "-"
        if namespace in self._namespaces:
            return namespace
        if len(self._namespaces) >= MAX_NAMESPACES:
            return OTHER
        self._namespaces.add(namespace)
        return namespace

    def count_request(self, status: int, namespace: str | None) -> None:
        """Count one answered request (label children cached: this runs per request)."""
        key = (status, namespace)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(str(status), self.namespace_label(namespace))
            if len(self._request_children) < 10 * MAX_NAMESPACES:
                self._request_children[key] = child
        child.inc()

    def count_accepted_bytes(self, namespace: str, size: int) -> None:
        child = self._bytes_children.get(namespace)
        if child is None:
            child = self.body_bytes.labels(self.namespace_label(namespace))
            if len(self._bytes_children) < 10 * MAX_NAMESPACES:
                self._bytes_children[namespace] = child
        child.inc(size)

    def watch_spool(
        self, depth_bytes: Callable[[], float], depth_files: Callable[[], float]
    ) -> None:
        self.spool_bytes.set_function(depth_bytes)
        self.spool_files.set_function(depth_files)

    def render(self) -> bytes:
        return render(self.registry)
