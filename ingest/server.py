"""Run the ingest app on a socket with the settings the edge needs, and shut down cleanly.

`auto_decompress=False` is the knob that keeps aiohttp from gunzipping request bodies
(`Content-Encoding: gzip`), so the stored bytes are exactly the bytes received. It belongs
to the low-level request handler, so it is passed through `web.AppRunner`.

On SIGTERM or SIGINT: stop accepting, let in-flight requests finish, seal the open spool
file, upload what is sealed (bounded by the drain timeout), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from ingest.accesslog import ACCESS_LOGGER, JsonAccessLogger
from ingest.app import SETTINGS_KEY
from ingest.metrics import METRICS_KEY
from ingest.paths import MAX_PATH_BYTES
from ingest.slow_clients import GUARD_KEY
from pipeline.client_address import AddressPolicy

log = logging.getLogger(__name__)

# aiohttp answers 400 itself beyond its parser limits; keep them above ours so that the
# handler can give the specific 414 and 431 answers.
PARSER_LIMITS = {"max_line_size": MAX_PATH_BYTES * 8, "max_field_size": 16 * 1024}
# After a refusal, how long aiohttp reads and discards the rest of an unread body so that the
# client gets to read the answer (ended at once by a shutdown: see ingest.slow_clients).
LINGERING_SECONDS = 10.0


def make_runner(
    app: web.Application,
    *,
    access_log: bool = True,
    shutdown_timeout: float = 10.0,
    lingering_time: float = LINGERING_SECONDS,
) -> web.AppRunner:
    """An AppRunner that keeps bodies compressed and logs (and counts) every request.

    Idle kept-alive connections close after TELEMETRY_KEEPALIVE_TIMEOUT_SECONDS (aiohttp's own
    default is an hour: enough idle connections to exhaust the file descriptors).
    """
    settings = app.get(SETTINGS_KEY)
    keepalive = settings.keepalive_timeout_seconds if settings is not None else 75.0
    logger_class = JsonAccessLogger.for_metrics(
        app.get(METRICS_KEY),
        AddressPolicy.from_settings(settings) if settings is not None else None,
        settings.trusted_proxy_hops if settings is not None else 0,
    )
    return web.AppRunner(
        app,
        auto_decompress=False,
        access_log_class=logger_class,
        access_log=ACCESS_LOGGER if access_log else _silent_logger(),
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=keepalive,
        lingering_time=lingering_time,
        handle_signals=False,
        **PARSER_LIMITS,
    )


def _silent_logger() -> logging.Logger:
    silent = logging.getLogger("ingest.access.off")
    silent.propagate = False
    silent.setLevel(logging.CRITICAL)
    return silent


@contextlib.asynccontextmanager
async def running(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: bool = True,
    shutdown_timeout: float = 10.0,
    lingering_time: float = LINGERING_SECONDS,
) -> AsyncIterator[str]:
    """Serve `app` while the block runs; yields the base URL (port 0 picks a free port).

    Leaving the block is the graceful shutdown: listeners close, in-flight requests finish
    (for up to `shutdown_timeout`), then the app's cleanup seals and uploads the spool.
    Connections go through the app's `ConnectionGuard` (header timeout), which is why the
    listener is the event loop's own server around `runner.server` rather than a TCPSite.
    """
    runner = make_runner(
        app,
        access_log=access_log,
        shutdown_timeout=shutdown_timeout,
        lingering_time=lingering_time,
    )
    await runner.setup()
    listener: asyncio.Server | None = None
    try:
        factory = runner.server
        guard = app.get(GUARD_KEY)
        if guard is not None:
            guard.access_log = access_log
            factory = guard.protocol_factory(runner.server)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(factory, host, port, backlog=1024)
        bound = listener.sockets[0].getsockname()[1]
        log.info(
            "ingest: listening on http://%s:%d (event loop: %s)",
            host,
            bound,
            type(loop).__module__.partition(".")[0],
        )
        yield f"http://{host}:{bound}"
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    access_log: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT arrives), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(app, host, port, access_log=access_log):
            await stop.wait()
            log.info(
                "ingest: shutting down: no new connections, finishing requests, flushing the spool"
            )
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("ingest: stopped")
