"""Structured access log (one line per request with the docId as a field) and request metrics.

The line has no client address (privacy: see pipeline.client_address), at most its keyed hash.

aiohttp calls the access logger for every answered request, including the ones its own
router or parser refuse, which makes it the one place to count requests by status. It is
always "enabled" so the counting happens even when the log line itself is switched off.

The metrics are bound to the logger class (`for_metrics`) rather than read from
`request.app`: a request the HTTP parser refused (a request line or header over aiohttp's
limits, garbage bytes) never reaches the router, and such a request has no app.
"""

from __future__ import annotations

import logging
import os
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ingest.metrics import IngestMetrics
from pipeline.client_address import FORWARDED_FOR, AddressPolicy, client_address

ACCESS_LOGGER = logging.getLogger("ingest.access")
# What the submission handler learned about a request, for the log line and the metrics.
DOC_ID = web.RequestKey("doc_id", str)
NAMESPACE = web.RequestKey("namespace", str)
REASON = web.RequestKey("reason", str)


LINE = "%s %s %s"  # method, path, status; the rest are fields

# Refusals made by aiohttp itself (router or HTTP parser), which our handlers never label.
UNLABELLED_REFUSALS = {400: "malformed_http", 404: "not_found", 405: "method_not_allowed"}


class JsonAccessLogger(AbstractAccessLogger):
    metrics: IngestMetrics | None = None
    address_policy: AddressPolicy = AddressPolicy()
    trusted_hops: int = 0

    @classmethod
    def for_metrics(
        cls,
        metrics: IngestMetrics | None,
        address_policy: AddressPolicy | None = None,
        trusted_hops: int = 0,
    ) -> type[JsonAccessLogger]:
        """A logger class that counts into `metrics` (aiohttp instantiates the class itself).

        The client's address is never logged; with the `hash` policy its keyed hash is
        (`remote_hash`), taken from the same address the records keep (`trusted_hops`).
        """
        attributes = {
            "metrics": metrics,
            "address_policy": address_policy or AddressPolicy(),
            "trusted_hops": trusted_hops,
        }
        return type(cls.__name__, (cls,), attributes)

    @property
    def enabled(self) -> bool:
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        namespace = request.get(NAMESPACE)
        status = response.status
        if status >= 400 and request.get(REASON) is None:
            request[REASON] = UNLABELLED_REFUSALS.get(status, f"http_{status}")
            if self.metrics is not None:
                self.metrics.rejections.labels(request[REASON]).inc()
        if self.metrics is not None:
            self.metrics.count_request(status, namespace)
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        method, path = request.method, request.path[:300]
        entry = {
            "method": method,
            "path": path,
            "status": status,
            "ms": round(time * 1000, 2),
            "bytes_in": request.content_length,
        }
        if namespace is not None:
            entry["namespace"] = namespace
        doc_id = request.get(DOC_ID)
        if doc_id is not None:
            entry["docId"] = doc_id
        reason = request.get(REASON)
        if reason is not None:
            entry["reason"] = reason
        if self.address_policy.policy == "hash":
            forwarded = request.headers.getall(FORWARDED_FOR, [])
            address = client_address(request.remote, forwarded, self.trusted_hops)
            entry["remote_hash"] = self.address_policy.kept(address)
        # The fields travel as fields: with TELEMETRY_LOG_FORMAT=json the line is one JSON
        # object holding them; as text they follow the message as key=value (pipeline.logs).
        # The record is made here rather than by `logger.info`, which would first walk the
        # stack to find its caller (a good part of the line's cost; the line never shows it).
        logger.handle(self._record(logger.name, (method, path, status), entry))

    _template: tuple[int, dict[str, object]] | None = None  # (pid, a record's attributes)

    def _record(
        self, name: str, args: tuple[object, ...], fields: dict[str, object]
    ) -> logging.LogRecord:
        """A LogRecord like the one `logger.info(...)` would make, for a fraction of the cost.

        `logging.LogRecord()` looks up the source file, thread and process for every record;
        for the access log they are the same on every line (always logged from the event
        loop's thread), so one record made the ordinary way serves as a template and each
        line copies it with its own time, arguments and fields.
        """
        pid = os.getpid()
        template = JsonAccessLogger._template
        if template is None or template[0] != pid:  # the first line (again after a fork)
            made = logging.LogRecord(name, logging.INFO, __file__, 0, LINE, (), None)
            template = JsonAccessLogger._template = (pid, vars(made))
        attributes = template[1]
        record = logging.LogRecord.__new__(logging.LogRecord)
        now = time.time()
        record.__dict__.update(attributes)
        record.__dict__.update(fields)
        record.name = name
        record.args = args
        record.created = now
        record.msecs = int((now - int(now)) * 1000) + 0.0
        record.relativeCreated = (
            attributes["relativeCreated"] + (now - attributes["created"]) * 1000
        )
        return record
