"""The aiohttp application: submission handler, health endpoints and metrics.

The edge does as little as possible per request: check the path and the limits, read the
body as raw bytes (never decompressed, never parsed), append one record to the spool and
answer once it is durable. Status codes follow the table in README "Ingest: URLs and status
codes" (and docs/architecture.md for why the edge never parses).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from importlib import metadata
from urllib.parse import urlparse

from aiohttp import web

from ingest.accesslog import DOC_ID, NAMESPACE, REASON
from ingest.hourly_counts import HourlyCounts
from ingest.metrics import METRICS_KEY, IngestMetrics
from ingest.paths import MAX_PATH_BYTES, SUBMIT_PREFIX, BadSubmissionPath, parse_submission
from ingest.slow_clients import BODY_TIMEOUT_REASON, ConnectionGuard, install
from ingest.spool import Spool, SpoolFull
from ingest.uploader import Uploader
from pipeline.allow_list import AllowList
from pipeline.client_address import ADDRESS_HEADER, FORWARDED_FOR, client_address
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

SPOOL_KEY = web.AppKey("spool", Spool)
UPLOADER_KEY = web.AppKey("uploader", Uploader)
SETTINGS_KEY = web.AppKey("settings", Settings)
COUNTS_KEY = web.AppKey("hourly_counts", HourlyCounts)
DRAIN_TIMEOUT_KEY = web.AppKey("drain_timeout", float)


class BodyTooLarge(Exception):
    pass


class BodyStalled(Exception):
    pass


def _reject(request: web.Request, status: int, reason: str, message: str) -> web.Response:
    """Answer a refusal and count it. The connection is not closed at once: aiohttp reads and
    discards the rest of an unread body for up to its lingering time (10 s), so that a client
    still sending gets to read the answer instead of a connection reset."""
    request[REASON] = reason
    request.app[METRICS_KEY].rejections.labels(reason).inc()
    return web.Response(status=status, text=message + "\n")


async def _read_body(request: web.Request, limit: int, stall_timeout: float) -> bytes:
    """Read the raw body, refusing as soon as more than `limit` bytes arrived (chunked too),
    or when no byte of it arrived for `stall_timeout` seconds (a reverse proxy's
    client_body_timeout: the time between two reads, not for the whole body).

    What has already arrived is taken without a timer (most bodies are whole in the buffer
    by the time the handler runs); a timer is armed only to wait for more. A body that
    arrived in one piece is returned as it is, without a copy.
    """
    content = request.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = content.read_nowait()
        if not chunk:
            if content.is_eof():
                break
            try:
                async with asyncio.timeout(stall_timeout):
                    chunk = await content.readany()
            except TimeoutError:
                raise BodyStalled from None
            if not chunk:
                break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def submit(request: web.Request) -> web.Response:
    received_ms = time.time_ns() // 1_000_000
    app = request.app
    raw_path = request.raw_path
    if len(raw_path) > MAX_PATH_BYTES:
        return _reject(request, 414, "path_too_long", f"request target over {MAX_PATH_BYTES} bytes")
    if request.method != "POST":
        response = _reject(
            request, 405, "method", f"{request.method} not allowed; submissions are POSTed"
        )
        response.headers["Allow"] = "POST"
        return response
    path = raw_path.partition("?")[0]
    try:
        submission = parse_submission(path)
    except BadSubmissionPath as exc:
        return _reject(request, 400, "bad_path", str(exc))
    request[DOC_ID] = submission.doc_id
    request[NAMESPACE] = submission.namespace
    for name, value in request.raw_headers:
        if len(value) > MAX_HEADER_VALUE_BYTES:
            return _reject(
                request,
                431,
                "header_too_large",
                f"header {name[:64].decode('latin-1')} is over {MAX_HEADER_VALUE_BYTES} bytes",
            )
    settings = app[SETTINGS_KEY]
    length = request.content_length
    if length is None and "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return _reject(
            request,
            411,
            "no_length",
            "Content-Length or chunked transfer encoding required",
        )
    if length is not None and length > settings.max_body_bytes:
        return _reject(request, 413, "body_too_large", f"body over {settings.max_body_bytes} bytes")
    try:
        body = await _read_body(
            request, settings.max_body_bytes, settings.client_body_timeout_seconds
        )
    except BodyTooLarge:
        return _reject(request, 413, "body_too_large", f"body over {settings.max_body_bytes} bytes")
    except BodyStalled:
        response = _reject(
            request,
            408,
            BODY_TIMEOUT_REASON,
            f"no body bytes for {settings.client_body_timeout_seconds:g}s",
        )
        response.force_close()
        return response
    headers = request.headers
    kept = {name: headers[name] for name in KEPT_HEADERS if name in headers}
    address = client_address(
        request.remote, headers.getall(FORWARDED_FOR, []), settings.trusted_proxy_hops
    )
    if address:
        kept[ADDRESS_HEADER] = address
    record = encode_record(received_ms, path, kept, body)
    try:
        await app[SPOOL_KEY].append(record)
    except SpoolFull as exc:
        return _reject(
            request, 507, exc.reason, f"cannot store the submission now: {exc}; retry later"
        )
    metrics = app[METRICS_KEY]
    metrics.count_accepted_bytes(submission.namespace, len(body))
    counts = app.get(COUNTS_KEY)
    if counts is not None:
        counts.add(received_ms, submission)
    return web.Response(text="OK")


def _allow_get(handler):
    async def wrapper(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            response = _reject(request, 405, "method", f"{request.method} not allowed here")
            response.headers["Allow"] = "GET, HEAD"
            return response
        return await handler(request)

    wrapper.__name__ = handler.__name__
    return wrapper


def health(app: web.Application) -> dict[str, object]:
    """The heartbeat's view: can this server take a submission right now?"""
    spool, uploader = app[SPOOL_KEY], app[UPLOADER_KEY]
    # Healthy means "a request of the largest allowed size would be stored now".
    refusal = spool.refusal(app[SETTINGS_KEY].max_body_bytes)
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


@_allow_get
async def heartbeat(request: web.Request) -> web.Response:
    report = health(request.app)
    if report["status"] != "ok":
        request[REASON] = "heartbeat_failed"
    return web.json_response(report, status=200 if report["status"] == "ok" else 500)


@_allow_get
async def lbheartbeat(request: web.Request) -> web.Response:
    return web.Response(text="OK")


def _version() -> dict[str, str]:
    try:
        version = metadata.version("telemetry-pipeline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"source": "telemetry-pipeline", "version": version, "service": "ingest"}


@_allow_get
async def version(request: web.Request) -> web.Response:
    return web.json_response(_version())


@_allow_get
async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    response = web.Response(body=metrics.render())
    response.headers["Content-Type"] = metrics.content_type
    return response


async def unknown(request: web.Request) -> web.Response:
    return _reject(
        request,
        404,
        "unknown_prefix",
        f"nothing at {request.path[:200]}; submit to {SUBMIT_PREFIX}...",
    )


async def _service(app: web.Application) -> AsyncIterator[None]:
    """Start the spool and uploader with the app; on shutdown seal, upload and stop them."""
    settings = app[SETTINGS_KEY]
    spool, uploader, counts = app[SPOOL_KEY], app[UPLOADER_KEY], app.get(COUNTS_KEY)
    loop = asyncio.get_running_loop()
    for sealed in await loop.run_in_executor(None, spool.recover):
        uploader.submit(sealed)
    spool.start()
    uploader.start()
    if counts is not None:
        counts.start()
    log.info(
        "ingest: spooling to %s (fsync %s), uploading to %s, announcing on %s",
        settings.spool_dir,
        settings.fsync_policy,
        settings.incoming_url,
        settings.queue_url,
    )
    yield
    await spool.close()
    drained = await uploader.drain(app[DRAIN_TIMEOUT_KEY])
    if not drained:
        log.warning(
            "ingest: %d batch(es) not uploaded at shutdown; they stay in %s for the next start",
            uploader.backlog,
            settings.spool_dir,
        )
    await uploader.close()
    spool.unlock()
    if counts is not None:
        await counts.close()


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
) -> web.Application:
    """Build the ingest application for `settings` (serve it with `ingest.server.serve`).

    The store and queue are opened lazily by the uploader, so the edge starts and accepts
    even while they are unreachable; only URLs that can never work are refused here.
    """
    _check_url("TELEMETRY_INCOMING_URL", settings.incoming_url, STORE_SCHEMES)
    _check_url("TELEMETRY_QUEUE_URL", settings.queue_url, QUEUE_SCHEMES)
    app = web.Application(client_max_size=settings.max_body_bytes + 1)
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
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app[SPOOL_KEY] = spool
    app[UPLOADER_KEY] = uploader
    app[DRAIN_TIMEOUT_KEY] = drain_timeout
    if count_hourly:
        app[COUNTS_KEY] = HourlyCounts(
            settings.database_url, allow_list=AllowList.parse(settings.allowed_doc_types)
        )
    install(app, ConnectionGuard(settings.client_header_timeout_seconds, metrics))
    app.cleanup_ctx.append(_service)
    app.router.add_route("*", SUBMIT_PREFIX + "{tail:.*}", submit)  # first: the hot path
    app.router.add_route("*", "/__heartbeat__", heartbeat)
    app.router.add_route("*", "/__lbheartbeat__", lbheartbeat)
    app.router.add_route("*", "/__version__", version)
    app.router.add_route("*", "/metrics", metrics_endpoint)
    app.router.add_route("*", "/{tail:.*}", unknown)
    return app
