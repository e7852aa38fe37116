"""Run the ingest app on a socket and shut down cleanly.

The HTTP layer is `ingest.http` (httptools on the running event loop, uvloop under
`python -m ingest`). Bodies are stored as received: nothing on the way decompresses them.

On SIGTERM or SIGINT: stop accepting, close idle connections, let in-flight requests finish,
seal the open spool file, upload what is sealed (bounded by the drain timeout), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from ingest.app import IngestApp
from ingest.http import HttpServer
from ingest.slow_clients import LINGERING_SECONDS, Timeouts

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def running(
    app: IngestApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: bool = True,
    shutdown_timeout: float = 10.0,
    lingering_time: float = LINGERING_SECONDS,
) -> AsyncIterator[str]:
    """Serve `app` while the block runs; yields the base URL (port 0 picks a free port).

    Leaving the block is the graceful shutdown: the listener closes, idle connections close,
    in-flight requests finish (for up to `shutdown_timeout`), then the app seals and uploads
    the spool. After a refusal the rest of an unread body is read and dropped for up to
    `lingering_time` (ended at once by the shutdown).
    """
    app.access_log.enabled = access_log
    server = HttpServer(app, Timeouts.from_settings(app.settings, lingering_time))
    await app.startup()
    listener: asyncio.Server | None = None
    try:
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(server.connection, host, port, backlog=1024)
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
        await server.shutdown(shutdown_timeout)
        await app.cleanup()


async def serve(
    app: IngestApp,
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
