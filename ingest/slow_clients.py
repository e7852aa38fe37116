"""Close connections whose clients are too slow to send a request, and end lingering at shutdown.

aiohttp reads request headers for as long as the client keeps the connection open: 50 clients
sending their headers a byte at a time hold 50 connections (and file descriptors) for ever,
the "slowloris" attack a reverse proxy's `client_header_timeout` exists for. `ConnectionGuard`
is that timeout for the ingest server: every connection gets `header_timeout` seconds, from
the moment it opens or the first byte of its next request arrives, to complete the headers of
a request. Past it the connection is closed, counted under the rejection reason
`header_timeout` and logged as a 408 (as nginx logs it), without an answer. The body has its
own timeout between reads (`read_body` in the submission handler, `body_timeout`).

The guard sits between the event loop and aiohttp's protocol: `protocol_factory` wraps each
`RequestHandler` in a `GuardedConnection` that sees the bytes arrive, and the middleware
`track_requests` tells it when a request's headers are complete (its handler starts) and when
it ends. Idle keep-alive connections are left to aiohttp's keep-alive timeout.

At shutdown, a connection still reading and discarding the rest of a refused body (aiohttp's
"lingering", up to its lingering time) would hold the server's exit for that long; `shutdown`
ends those reads at once. Requests still in their handlers are finished as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import StreamReader, web

from ingest.accesslog import ACCESS_LOGGER
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

HEADER_TIMEOUT_REASON = "header_timeout"
BODY_TIMEOUT_REASON = "body_timeout"


class GuardedConnection(asyncio.Protocol):
    """One client connection: aiohttp's protocol `inner`, plus the header deadline."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.in_request = False
        self.unread_body: StreamReader | None = None  # of a finished request, still lingering
        self._deadline: asyncio.TimerHandle | None = None
        self._opened = 0.0

    # -- asyncio.Protocol, delegated to aiohttp's handler ---------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.guard.connections[self.inner] = self
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and not self.in_request and not self._lingering():
            self._arm()  # the first bytes of the next request on a kept-alive connection
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.connections.pop(self.inner, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- request phases (from the middleware) --------------------------------------------

    def request_started(self) -> None:
        """The headers of a request are complete: the header deadline no longer applies."""
        self.in_request = True
        self.unread_body = None
        self._disarm()

    def request_finished(self, body: StreamReader) -> None:
        self.in_request = False
        self.unread_body = None if body.is_eof() else body

    def end_lingering(self) -> None:
        """Stop reading the rest of a refused body (aiohttp discards it until EOF)."""
        if self._lingering():
            self.unread_body.feed_eof()

    def _lingering(self) -> bool:
        return self.unread_body is not None and not self.unread_body.is_eof()

    # -- the deadline ------------------------------------------------------------------

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._opened = loop.time()
        self._deadline = loop.call_later(self.guard.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.in_request or self.transport is None or self.transport.is_closing():
            return
        self.guard.timed_out(asyncio.get_running_loop().time() - self._opened)
        self.transport.close()


class ConnectionGuard:
    """The header timeout for every connection of one server, and its shutdown helper."""

    def __init__(self, header_timeout: float, metrics: IngestMetrics | None = None) -> None:
        self.header_timeout = header_timeout
        self.metrics = metrics
        self.access_log = True  # the server turns it off with the access log (--no-access-log)
        self.connections: dict[asyncio.Protocol, GuardedConnection] = {}

    def protocol_factory(
        self, make_handler: Callable[[], asyncio.Protocol]
    ) -> Callable[[], GuardedConnection]:
        """Wrap aiohttp's protocol factory (`runner.server`) for `loop.create_server`."""
        return lambda: GuardedConnection(self, make_handler())

    def timed_out(self, waited: float) -> None:
        if self.metrics is not None:
            self.metrics.rejections.labels(HEADER_TIMEOUT_REASON).inc()
        if self.access_log and ACCESS_LOGGER.isEnabledFor(logging.INFO):
            entry = {"status": 408, "ms": round(waited * 1000, 2), "reason": HEADER_TIMEOUT_REASON}
            ACCESS_LOGGER.info("- - 408 (headers not complete in time)", extra=entry)

    def shutdown(self) -> None:
        """End every lingering read of a refused body, so the server can exit now."""
        for connection in list(self.connections.values()):
            connection.end_lingering()

    @web.middleware
    async def track_requests(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        connection = self.connections.get(request.protocol)
        if connection is None:  # served without the guard (a test client, another server)
            return await handler(request)
        connection.request_started()
        try:
            return await handler(request)
        finally:
            connection.request_finished(request.content)


GUARD_KEY = web.AppKey("connection_guard", ConnectionGuard)


async def _end_lingering(app: web.Application) -> None:
    app[GUARD_KEY].shutdown()


def install(app: web.Application, guard: ConnectionGuard) -> None:
    """Attach `guard` to `app`: its middleware, and the end of lingering reads at shutdown."""
    app[GUARD_KEY] = guard
    app.middlewares.append(guard.track_requests)
    app.on_shutdown.append(_end_lingering)
