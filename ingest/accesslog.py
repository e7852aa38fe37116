"""Structured access log (one line per request with the docId as a field) and request metrics.

The line has no client address (privacy: see pipeline.client_address), at most its keyed hash.

The server calls `AccessLog.answered` for every answered request, including the ones its HTTP
parser refuses (garbage bytes, a request line or header over the limits), which makes it the
one place to count requests by status. The counting happens even when the log line itself is
switched off (`--no-access-log`).
"""

from __future__ import annotations

import logging
import os
import time
from urllib.parse import unquote

from ingest.metrics import IngestMetrics
from pipeline.client_address import AddressPolicy, client_address

ACCESS_LOGGER = logging.getLogger("ingest.access")

LINE = "%s %s %s"  # method, path, status; the rest are fields
HEADER_TIMEOUT_LINE = "- - 408 (headers not complete in time)"


class AccessLog:
    """Counts every answer into `metrics` and, when `enabled`, logs one line for it."""

    def __init__(
        self,
        metrics: IngestMetrics | None,
        address_policy: AddressPolicy | None = None,
        trusted_hops: int = 0,
        *,
        enabled: bool = True,
        logger: logging.Logger = ACCESS_LOGGER,
    ) -> None:
        self.metrics = metrics
        self.address_policy = address_policy or AddressPolicy()
        self.trusted_hops = trusted_hops
        self.enabled = enabled
        self.logger = logger
        self._template: tuple[int, dict[str, object]] | None = None  # (pid, record attributes)

    def answered(
        self,
        method: str,
        path: str,
        status: int,
        seconds: float,
        *,
        bytes_in: int | None = None,
        namespace: str | None = None,
        doc_id: str | None = None,
        reason: str | None = None,
        peer: str | None = None,
        forwarded_for: list[str] | None = None,
    ) -> None:
        """Count one answered request and log its line (`path` as received, undecoded).

        Refusals are counted by reason where they are decided (`IngestApp.refuse`)."""
        metrics = self.metrics
        if metrics is not None:
            metrics.count_request(status, namespace)
        logger = self.logger
        if not self.enabled or not logger.isEnabledFor(logging.INFO):
            return
        path = unquote(path)[:300]
        entry: dict[str, object] = {
            "method": method,
            "path": path,
            "status": status,
            "ms": round(seconds * 1000, 2),
            "bytes_in": bytes_in,
        }
        if namespace is not None:
            entry["namespace"] = namespace
        if doc_id is not None:
            entry["docId"] = doc_id
        if reason is not None:
            entry["reason"] = reason
        if self.address_policy.policy == "hash":
            address = client_address(peer, forwarded_for or [], self.trusted_hops)
            entry["remote_hash"] = self.address_policy.kept(address)
        # The fields travel as fields: with TELEMETRY_LOG_FORMAT=json the line is one JSON
        # object holding them; as text they follow the message as key=value (pipeline.logs).
        # The record is made here rather than by `logger.info`, which would first walk the
        # stack to find its caller (a good part of the line's cost; the line never shows it).
        logger.handle(self._record(LINE, (method, path, status), entry))

    def header_timeout(self, waited: float, reason: str) -> None:
        """A connection closed without an answer because its headers did not arrive in time:
        counted and logged as a 408, as nginx logs it."""
        if self.metrics is not None:
            self.metrics.rejections.labels(reason).inc()
        if self.enabled and self.logger.isEnabledFor(logging.INFO):
            entry = {"status": 408, "ms": round(waited * 1000, 2), "reason": reason}
            self.logger.handle(self._record(HEADER_TIMEOUT_LINE, (), entry))

    def _record(
        self, message: str, args: tuple[object, ...], fields: dict[str, object]
    ) -> logging.LogRecord:
        """A LogRecord like the one `logger.info(...)` would make, for a fraction of the cost.

        `logging.LogRecord()` looks up the source file, thread and process for every record;
        for the access log they are the same on every line (always logged from the event
        loop's thread), so one record made the ordinary way serves as a template and each
        line copies it with its own time, arguments and fields.
        """
        pid = os.getpid()
        template = self._template
        if template is None or template[0] != pid:  # the first line (again after a fork)
            made = logging.LogRecord(self.logger.name, logging.INFO, __file__, 0, LINE, (), None)
            template = self._template = (pid, vars(made))
        attributes = template[1]
        record = logging.LogRecord.__new__(logging.LogRecord)
        now = time.time()
        record.__dict__.update(attributes)
        record.__dict__.update(fields)
        record.msg = message
        record.args = args
        record.created = now
        record.msecs = int((now - int(now)) * 1000) + 0.0
        record.relativeCreated = (
            attributes["relativeCreated"] + (now - attributes["created"]) * 1000
        )
        return record
