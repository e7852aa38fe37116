"""The ingest application: submission handling, health endpoints and metrics.

The edge does as little as possible per request: check the path and the limits, take the
body as raw bytes (never decompressed, never parsed), append one record to the spool and
answer once it is durable. Status codes follow the table in README "Ingest: URLs and status
codes" (and docs/architecture.md for why the edge never parses). The HTTP/1.1 connection
that calls this (`begin`, `complete`, `finish`) is `ingest.http`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import metadata
from urllib.parse import unquote, urlparse

from ingest.accesslog import AccessLog
from ingest.errors import BadSubmissionPath, SpoolRefusal
from ingest.hourly_counts import HourlyCounts
from ingest.http import Exchange
from ingest.metrics import IngestMetrics
from ingest.paths import MAX_PATH_BYTES, SUBMIT_PREFIX, parse_submission
from ingest.responses import OK, Reply
from ingest.slow_clients import BODY_TIMEOUT_REASON, HEADER_TIMEOUT_REASON
from ingest.spool import Spool
from ingest.uploader import Uploader
from pipeline.allow_list import AllowList
from pipeline.client_address import ADDRESS_HEADER, AddressPolicy, client_address
from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.queues import open_work_queue
from pipeline.records import encode_record
from pipeline.stores import open_store

log = logging.getLogger(__name__)

MAX_HEADER_VALUE_BYTES = 1024
# Request headers kept in each record: what the converter may need, nothing identifying beyond
# what the original server kept. The client's address is kept as `Remote-Addr` (the peer, or
# the trusted X-Forwarded-For entry) for convert's country lookup, which then drops it;
# X-Forwarded-For itself is not kept.
KEPT_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Content-Length",
    "Transfer-Encoding",
    "User-Agent",
    "Date",
    "X-PingSender-Version",
    "X-Debug-ID",
    "X-Source-Tags",
)
_KEPT_BY_LOWER_NAME = {name.lower().encode("ascii"): name for name in KEPT_HEADERS}
_FORWARDED_FOR = b"x-forwarded-for"
_CONTENT_LENGTH = b"content-length"
_SUBMIT_PREFIX = SUBMIT_PREFIX.encode("ascii")
_GET_ONLY = b"Allow: GET, HEAD\r\n"
_POST_ONLY = b"Allow: POST\r\n"


def _decode(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _content_length(exchange: Exchange) -> int | None:
    for name, value in exchange.headers:
        if name.lower() == _CONTENT_LENGTH:
            return int(value)
    return None


class IngestApp:
    """One ingest server's application: its spool, uploader, metrics and request handling."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        uploader: Uploader,
        metrics: IngestMetrics,
        counts: HourlyCounts | None,
        drain_timeout: float,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.uploader = uploader
        self.metrics = metrics
        self.counts = counts
        self.drain_timeout = drain_timeout
        self.max_body_bytes = settings.max_body_bytes
        self.trusted_hops = settings.trusted_proxy_hops
        self.address_policy = AddressPolicy.from_settings(settings)
        self.access_log = AccessLog(metrics, self.address_policy, self.trusted_hops)
        self._routes = {
            b"/__heartbeat__": self.heartbeat,
            b"/__lbheartbeat__": self.lbheartbeat,
            b"/__version__": self.version,
            b"/metrics": self.metrics_endpoint,
        }

    # -- refusals -------------------------------------------------------------------------

    def refuse(
        self, exchange: Exchange, status: int, reason: str, message: str, headers: bytes = b""
    ) -> Reply:
        """Answer a refusal and count it under `reason`."""
        exchange.reason = reason
        self.metrics.rejections.labels(reason).inc()
        return Reply.text(status, message, headers)

    def too_large(self, exchange: Exchange) -> Reply:
        return self.refuse(
            exchange, 413, "body_too_large", f"body over {self.max_body_bytes} bytes"
        )

    def stalled(self, exchange: Exchange) -> Reply:
        timeout = self.settings.client_body_timeout_seconds
        return self.refuse(exchange, 408, BODY_TIMEOUT_REASON, f"no body bytes for {timeout:g}s")

    def header_timeout(self, waited: float) -> None:
        self.access_log.header_timeout(waited, HEADER_TIMEOUT_REASON)

    # -- a request's life -------------------------------------------------------------------

    def begin(self, exchange: Exchange) -> Reply | None:
        """The headers are in: route, check the limits, refuse before the body if need be."""
        target = exchange.target
        raw_path = target.partition(b"?")[0]
        if raw_path.startswith(_SUBMIT_PREFIX):
            return self._begin_submission(exchange, target, raw_path)
        exchange.path = _decode(raw_path)
        exchange.content_length = _content_length(exchange)
        route = self._routes.get(raw_path)
        if route is None:
            return self.refuse(
                exchange,
                404,
                "unknown_prefix",
                f"nothing at {unquote(exchange.path)[:200]}; submit to {SUBMIT_PREFIX}...",
            )
        if exchange.method not in ("GET", "HEAD"):
            return self.refuse(
                exchange, 405, "method", f"{exchange.method} not allowed here", _GET_ONLY
            )
        exchange.route = route
        exchange.head_only = exchange.method == "HEAD"
        return None

    def _begin_submission(self, exchange: Exchange, target: bytes, raw_path: bytes) -> Reply | None:
        path = exchange.path = _decode(raw_path)
        if len(target) > MAX_PATH_BYTES:
            return self.refuse(
                exchange, 414, "path_too_long", f"request target over {MAX_PATH_BYTES} bytes"
            )
        if exchange.method != "POST":
            return self.refuse(
                exchange,
                405,
                "method",
                f"{exchange.method} not allowed; submissions are POSTed",
                _POST_ONLY,
            )
        try:
            submission = parse_submission(path)
        except BadSubmissionPath as exc:
            return self.refuse(exchange, 400, "bad_path", str(exc))
        exchange.submission = submission
        exchange.doc_id = submission.doc_id
        exchange.namespace = submission.namespace
        kept: dict[str, str] = {}
        forwarded: list[str] = []
        for name, value in exchange.headers:
            if len(value) > MAX_HEADER_VALUE_BYTES:
                return self.refuse(
                    exchange,
                    431,
                    "header_too_large",
                    f"header {name[:64].decode('latin-1')} is over {MAX_HEADER_VALUE_BYTES} bytes",
                )
            lower = name.lower()
            canonical = _KEPT_BY_LOWER_NAME.get(lower)
            if canonical is not None:
                if canonical not in kept:
                    kept[canonical] = _decode(value)
            elif lower == _FORWARDED_FOR:
                forwarded.append(_decode(value))
        exchange.kept = kept
        exchange.forwarded = forwarded
        length = kept.get("Content-Length")
        if length is not None:
            exchange.content_length = int(length)
        elif "chunked" not in kept.get("Transfer-Encoding", "").lower():
            return self.refuse(
                exchange, 411, "no_length", "Content-Length or chunked transfer encoding required"
            )
        if exchange.content_length is not None and exchange.content_length > self.max_body_bytes:
            return self.too_large(exchange)
        exchange.received_ms = time.time_ns() // 1_000_000
        exchange.keep_body = True
        exchange.limit = self.max_body_bytes
        return None

    def complete(self, exchange: Exchange) -> Reply | asyncio.Future:
        """The whole request is in: answer it, or append the submission to the spool."""
        route = exchange.route
        if route is not None:
            return route(exchange)
        chunks = exchange.body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        kept = exchange.kept
        address = client_address(exchange.peer, exchange.forwarded, self.trusted_hops)
        if address:
            kept[ADDRESS_HEADER] = address
        record = encode_record(exchange.received_ms, exchange.path, kept, body)
        exchange.body = []
        try:
            return self.spool.append_nowait(record)
        except SpoolRefusal as exc:
            return self._unstored(exchange, exc)

    def finish(self, exchange: Exchange, outcome: asyncio.Future) -> Reply:
        """The spool's answer for a submission: durable (200) or not (507)."""
        error = outcome.exception()
        if error is not None:
            if isinstance(error, SpoolRefusal):
                return self._unstored(exchange, error)
            log.error("ingest: storing %s failed: %r", exchange.doc_id, error)
            return self.refuse(exchange, 500, "internal_error", "internal error; retry later")
        self.metrics.count_accepted_bytes(exchange.namespace, exchange.size)
        if self.counts is not None:
            self.counts.add(exchange.received_ms, exchange.submission)
        return OK

    def _unstored(self, exchange: Exchange, exc: SpoolRefusal) -> Reply:
        return self.refuse(
            exchange, 507, exc.reason, f"cannot store the submission now: {exc}; retry later"
        )

    def answered(self, exchange: Exchange, status: int, seconds: float) -> None:
        """Count the answer and log its line."""
        forwarded = exchange.forwarded
        if forwarded is None and self.address_policy.policy == "hash":
            forwarded = exchange.header_values(_FORWARDED_FOR)
        self.access_log.answered(
            exchange.method,
            exchange.path if exchange.path is not None else _decode(exchange.target) or "-",
            status,
            seconds,
            bytes_in=exchange.content_length,
            namespace=exchange.namespace,
            doc_id=exchange.doc_id,
            reason=exchange.reason,
            peer=exchange.peer,
            forwarded_for=forwarded,
        )

    # -- health, version, metrics ------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """The heartbeat's view: can this server take a submission right now?"""
        spool, uploader = self.spool, self.uploader
        # Healthy means "a request of the largest allowed size would be stored now".
        refusal = spool.refusal(self.max_body_bytes)
        checks = {
            "spool": "ok" if refusal is None else f"error: {refusal.reason}: {refusal}",
            "uploader": "ok" if uploader.healthy else f"warning: retrying: {uploader.last_error}",
        }
        return {
            "status": "ok" if refusal is None else "error",
            "checks": checks,
            "spool_bytes": spool.depth_bytes,
            "spool_files": spool.depth_files,
            "upload_backlog": uploader.backlog,
        }

    def heartbeat(self, exchange: Exchange) -> Reply:
        report = self.health()
        if report["status"] != "ok":
            exchange.reason = "heartbeat_failed"
        return Reply.json(200 if report["status"] == "ok" else 500, report)

    def lbheartbeat(self, exchange: Exchange) -> Reply:
        return OK

    def version(self, exchange: Exchange) -> Reply:
        return Reply.json(200, _version())

    def metrics_endpoint(self, exchange: Exchange) -> Reply:
        metrics = self.metrics
        return Reply(200, metrics.render(), metrics.content_type.encode("ascii"))

    # -- start and stop -----------------------------------------------------------------------

    async def startup(self) -> None:
        """Recover the spool and start the spool, the uploader and the hourly counts."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        for sealed in await loop.run_in_executor(None, self.spool.recover):
            self.uploader.submit(sealed)
        self.spool.start()
        self.uploader.start()
        if self.counts is not None:
            self.counts.start()
        log.info(
            "ingest: spooling to %s (fsync %s), uploading to %s, announcing on %s",
            settings.spool_dir,
            settings.fsync_policy,
            settings.incoming_url,
            settings.queue_url,
        )

    async def cleanup(self) -> None:
        """Seal the spool, upload what is sealed (bounded by the drain timeout), stop."""
        await self.spool.close()
        drained = await self.uploader.drain(self.drain_timeout)
        if not drained:
            log.warning(
                "ingest: %d batch(es) not uploaded at shutdown; they stay in %s for the next start",
                self.uploader.backlog,
                self.settings.spool_dir,
            )
        await self.uploader.close()
        self.spool.unlock()
        if self.counts is not None:
            await self.counts.close()


def _version() -> dict[str, str]:
    try:
        version = metadata.version("telemetry-pipeline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"source": "telemetry-pipeline", "version": version, "service": "ingest"}


STORE_SCHEMES = ("file", "s3")
QUEUE_SCHEMES = ("sqlite", "sqs", "redis", "rediss")


def _check_url(setting: str, url: str, schemes: tuple[str, ...]) -> None:
    scheme = urlparse(url).scheme
    if scheme not in schemes:
        raise ConfigError(
            setting, f"{url!r} has scheme {scheme!r}; use one of {', '.join(schemes)}"
        )


def create_app(
    settings: Settings,
    *,
    drain_timeout: float = 30.0,
    upload_max_backoff: float = 10.0,
    count_hourly: bool = True,
) -> IngestApp:
    """Build the ingest application for `settings` (serve it with `ingest.server.serve`).

    The store and queue are opened lazily by the uploader, so the edge starts and accepts
    even while they are unreachable; only URLs that can never work are refused here.
    """
    _check_url("TELEMETRY_INCOMING_URL", settings.incoming_url, STORE_SCHEMES)
    _check_url("TELEMETRY_QUEUE_URL", settings.queue_url, QUEUE_SCHEMES)
    metrics = IngestMetrics()
    spool = Spool(
        settings.spool_dir,
        max_file_bytes=settings.spool_max_file_bytes,
        max_age_seconds=settings.spool_max_age_seconds,
        cap_bytes=settings.spool_cap_bytes,
        min_free_bytes=settings.spool_min_free_bytes,
        fsync_policy=settings.fsync_policy,
    )
    uploader = Uploader(
        lambda: open_store(
            settings.incoming_url,
            setting="TELEMETRY_INCOMING_URL",
            endpoint_url=settings.s3_endpoint_url,
        ),
        lambda: open_work_queue(settings),
        spool.release,
        metrics,
        max_backoff=upload_max_backoff,
    )
    spool.on_sealed = uploader.submit
    metrics.watch_spool(lambda: spool.depth_bytes, lambda: spool.depth_files)
    counts = None
    if count_hourly:
        counts = HourlyCounts(
            settings.database_url, allow_list=AllowList.parse(settings.allowed_doc_types)
        )
    return IngestApp(settings, spool, uploader, metrics, counts, drain_timeout)
