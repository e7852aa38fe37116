"""Structured access log (one JSON object per request, with the docId) and request metrics.

aiohttp calls the access logger for every answered request, including the ones its own
router or parser refuse, which makes it the one place to count requests by status. It is
always "enabled" so the counting happens even when the log line itself is switched off.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ingest.metrics import METRICS_KEY

ACCESS_LOGGER = logging.getLogger("ingest.access")
# What the submission handler learned about a request, for the log line and the metrics.
DOC_ID = web.RequestKey("doc_id", str)
NAMESPACE = web.RequestKey("namespace", str)
REASON = web.RequestKey("reason", str)


class JsonAccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        namespace = request.get(NAMESPACE)
        status = response.status
        try:
            metrics = request.app[METRICS_KEY]  # type: ignore[attr-defined]
        except (AttributeError, KeyError):
            metrics = None
        if metrics is not None:
            metrics.count_request(status, namespace)
        if not self.logger.isEnabledFor(logging.INFO):
            return
        entry = {
            "remote": request.remote,
            "method": request.method,
            "path": request.path[:300],
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
        self.logger.info(json.dumps(entry, separators=(",", ":")))
