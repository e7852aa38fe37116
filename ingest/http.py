"""The ingest server's HTTP/1.1 layer: one `asyncio.Protocol` per connection, parsed by httptools.

Why not a web framework: ingest's HTTP surface is a handful of routes, and a framework's
per-request machinery (request and response objects, router, middlewares, stream readers)
cost more CPU than everything else ingest does for a submission put together (issue 19: an
aiohttp server that only appended bodies to a file reached 0.55-0.70x of the 2013 node.js
collector). Here a request is one small `Exchange`, parsed by llhttp (through httptools, as
uvicorn does), handed to the application (`ingest.app.IngestApp`) at two points:

- `begin(exchange)` when its headers are complete: the application may refuse at once
  (404, 405, 411, 413 by Content-Length, ...), before any body byte is read;
- `complete(exchange)` when its body is in: a `Reply`, or a future (the spool's group commit)
  after which `finish(exchange, future)` gives the `Reply`.

The connection keeps HTTP/1.1's promises: answers go out in request order (pipelining), a
request is answered `Connection: close` when the client or a shutdown asks for it,
`Expect: 100-continue` gets its interim answer, bodies are taken as sent (never decompressed;
chunked or with Content-Length), and after a refusal the rest of an unread body is read and
discarded ("lingering") so that the client gets to read the answer. Its deadlines are the
ones `ingest.slow_clients` describes; one timer per connection serves them all, re-armed
lazily so that the hot path (a whole request in one read) arms none.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Protocol

import httptools

from ingest.paths import MAX_PATH_BYTES
from ingest.responses import CONTINUE, Reply, render
from ingest.slow_clients import Timeouts

log = logging.getLogger(__name__)

# Beyond these the request is malformed (400): far above what any real client sends, and
# above ingest's own limits so that the application can give its specific 414 and 431.
MAX_REQUEST_LINE = MAX_PATH_BYTES * 8
MAX_FIELD_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024  # all of one request's headers (431 beyond)
MAX_PIPELINED = 32  # requests parsed ahead of their answers before reading pauses

_METHODS: dict[bytes, str] = {}


class Exchange:
    """One request and what the application decided about it."""

    __slots__ = (
        "method",
        "target",
        "headers",
        "headers_done",
        "complete",
        "keep_alive",
        "http10",
        "head_only",
        "peer",
        "started",
        "body",
        "size",
        "limit",
        "keep_body",
        "reply",
        "refused_at",
        "close",
        "route",
        "path",
        "content_length",
        "kept",
        "forwarded",
        "namespace",
        "doc_id",
        "submission",
        "received_ms",
        "reason",
    )

    def __init__(self, peer: str | None, started: float) -> None:
        self.method = "-"
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.http10 = False
        self.head_only = False
        self.peer = peer
        self.started = started
        self.body: list[bytes] = []
        self.size = 0
        self.limit = 0
        self.keep_body = False
        self.reply: Reply | None = None  # a refusal decided before the body was in
        self.refused_at = 0.0
        self.close = False  # answer with Connection: close and close
        # Filled by the application:
        self.route = None
        self.path: str | None = None
        self.content_length: int | None = None
        self.kept: dict[str, str] | None = None
        self.forwarded: list[str] | None = None
        self.namespace: str | None = None
        self.doc_id: str | None = None
        self.submission = None
        self.received_ms = 0
        self.reason: str | None = None

    def header_values(self, lower_name: bytes) -> list[str]:
        return [
            value.decode("utf-8", "surrogateescape")
            for name, value in self.headers
            if name.lower() == lower_name
        ]


class Application(Protocol):
    """What the connection needs from the application (see the module docstring)."""

    def begin(self, exchange: Exchange) -> Reply | None: ...
    def complete(self, exchange: Exchange) -> Reply | asyncio.Future: ...
    def finish(self, exchange: Exchange, outcome: asyncio.Future) -> Reply: ...
    def refuse(self, exchange: Exchange, status: int, reason: str, message: str) -> Reply: ...
    def too_large(self, exchange: Exchange) -> Reply: ...
    def stalled(self, exchange: Exchange) -> Reply: ...
    def answered(self, exchange: Exchange, status: int, seconds: float) -> None: ...
    def header_timeout(self, waited: float) -> None: ...


class HttpServer:
    """The connections of one listening socket, and their graceful shutdown."""

    def __init__(self, app: Application, timeouts: Timeouts) -> None:
        self.app = app
        self.timeouts = timeouts
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    def connection(self) -> HttpConnection:
        """The protocol factory for `loop.create_server`."""
        return HttpConnection(self)

    def opened(self, connection: HttpConnection) -> None:
        self.connections.add(connection)
        self._all_closed.clear()

    def closed(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._all_closed.set()

    async def shutdown(self, timeout: float) -> None:
        """Close idle and lingering connections now, let requests in progress be answered
        (for up to `timeout` seconds; then their connections are cut)."""
        self.closing = True
        for connection in list(self.connections):
            connection.shut_down()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._all_closed.wait()
        for connection in list(self.connections):
            connection.abort()


class _ParseStop(Exception):
    """Raised inside a parser callback to stop parsing; the reply is on the connection."""


class HttpConnection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.timeouts = server.timeouts
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.queue: collections.deque[Exchange] = collections.deque()  # answers owed, in order
        self.current: Exchange | None = None  # the request being parsed
        self.busy = False  # the head of the queue waits for the application
        self.lost = False
        self.input_closed = False  # no more requests are read (an answer will close)
        self.paused = False
        self.head_since: float | None = None  # waiting for headers since (None: not)
        self.head_bytes = 0
        self.last_read = 0.0
        self.idle_since = 0.0
        self.parse_error: Reply | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        self.last_read = self.head_since = self.idle_since = self.loop.time()
        self.server.opened(self)
        self._ensure_timer()

    def data_received(self, data: bytes) -> None:
        if self.input_closed:
            return
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.input_closed = True  # no protocol switch here; answer, then close
            self._close_when_answered()
        except httptools.HttpParserError as exc:
            self._malformed(exc)
        current = self.current
        if current is not None and not current.headers_done and not self.input_closed:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEADER_BYTES + MAX_REQUEST_LINE:
                self._fail(
                    current, 431, "header_too_large", f"headers over {MAX_HEADER_BYTES} bytes"
                )
        if len(self.queue) > MAX_PIPELINED and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._ensure_timer()

    def eof_received(self) -> bool | None:
        # The client sends no more; answers still owed go out, then the connection closes.
        self.input_closed = True
        if not self.queue:
            return False
        self._close_when_answered()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.input_closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.server.closed(self)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.paused:
            self.transport.resume_reading()

    # -- parser callbacks (httptools) -----------------------------------------------------

    def on_message_begin(self) -> None:
        self.current = Exchange(self.peer, self.last_read)
        self.head_bytes = 0
        if self.head_since is None:
            self.head_since = self.last_read

    def on_url(self, url: bytes) -> None:
        current = self.current
        current.target += url
        if len(current.target) > MAX_REQUEST_LINE:
            self.parse_error = self.app.refuse(
                current, 400, "malformed_http", f"request line over {MAX_REQUEST_LINE} bytes"
            )
            raise _ParseStop

    def on_header(self, name: bytes, value: bytes) -> None:
        current = self.current
        if len(name) > MAX_FIELD_BYTES or len(value) > MAX_FIELD_BYTES:
            self.parse_error = self.app.refuse(
                current, 400, "malformed_http", f"header field over {MAX_FIELD_BYTES} bytes"
            )
            raise _ParseStop
        current.size += len(name) + len(value)  # the headers' size until the body starts
        if current.size > MAX_HEADER_BYTES:
            self.parse_error = self.app.refuse(
                current, 431, "header_too_large", f"headers over {MAX_HEADER_BYTES} bytes"
            )
            raise _ParseStop
        current.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.current
        if self.input_closed:
            return  # a request after one that closes the connection: never answered
        parser = self.parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _METHODS.setdefault(raw_method, raw_method.decode("ascii", "replace"))
        exchange.method = method
        exchange.headers_done = True
        exchange.size = 0
        exchange.keep_alive = parser.should_keep_alive()
        exchange.http10 = parser.get_http_version() == "1.0"
        self.head_since = None
        self.queue.append(exchange)
        reply = self.app.begin(exchange)
        if reply is not None:
            self._refused(exchange, reply)
            self._advance()
        elif len(self.queue) == 1 and _expects_continue(exchange):
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        exchange = self.current
        if exchange.reply is not None or not exchange.keep_body:
            return  # lingering: the rest of a refused body is read and dropped
        exchange.size += len(body)
        if exchange.size > exchange.limit:
            exchange.body = []
            self._refused(exchange, self.app.too_large(exchange))
            self._advance()
            return
        exchange.body.append(body)

    def on_message_complete(self) -> None:
        exchange = self.current
        self.current = None
        exchange.complete = True
        if exchange.reply is None and self.queue and self.queue[0] is exchange:
            self._advance()

    # -- answering -------------------------------------------------------------------------

    def _refused(self, exchange: Exchange, reply: Reply, close: bool = False) -> None:
        exchange.reply = reply
        exchange.refused_at = self.last_read
        exchange.close = exchange.close or close

    def _advance(self) -> None:
        """Answer the queue's head as soon as it can be answered, in order."""
        queue = self.queue
        while queue and not self.busy:
            exchange = queue[0]
            reply = exchange.reply
            if reply is None:
                if not exchange.complete:
                    return  # its body is still arriving
                outcome = self.app.complete(exchange)
                if not isinstance(outcome, Reply):
                    self.busy = True
                    outcome.add_done_callback(self._finished)
                    return
                reply = outcome
            queue.popleft()
            self._send(exchange, reply)

    def _finished(self, outcome: asyncio.Future) -> None:
        self.busy = False
        exchange = self.queue.popleft()
        try:
            reply = self.app.finish(exchange, outcome)
        except Exception:  # a bug must not leave the connection waiting for ever
            log.exception("ingest: answering %s failed", exchange.doc_id)
            reply = self.app.refuse(exchange, 500, "internal_error", "internal error")
            exchange.close = True
        self._send(exchange, reply)
        self._advance()
        if self.paused and len(self.queue) <= MAX_PIPELINED // 2 and not self.input_closed:
            self.paused = False
            self.transport.resume_reading()

    def _send(self, exchange: Exchange, reply: Reply) -> None:
        close = exchange.close or not exchange.keep_alive or self.server.closing
        if not self.lost and not self.transport.is_closing():
            self.transport.write(
                render(reply, close=close, head_only=exchange.head_only, keep_alive=exchange.http10)
            )
        now = self.loop.time()
        self.app.answered(exchange, reply.status, now - exchange.started)
        if close:
            self._close_now()
            return
        self.idle_since = now
        if self.input_closed and not self.queue:
            self._close_now()
        elif not self.queue and self.current is None:
            self._ensure_timer()

    def _close_when_answered(self) -> None:
        if not self.queue and (self.current is None or self.current.reply is not None):
            self._close_now()
        # otherwise `_send` closes after the last answer (input_closed is set)

    def _close_now(self) -> None:
        self.input_closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()  # after the buffered answers are written

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def shut_down(self) -> None:
        """The server stops: close now unless a request is being read or answered."""
        current = self.current
        reading_body = current is not None and current.headers_done and current.reply is None
        if self.queue or reading_body:
            return  # its answer carries Connection: close and then closes
        self._close_now()

    # -- errors ---------------------------------------------------------------------------

    def _malformed(self, exc: Exception) -> None:
        reply, self.parse_error = self.parse_error, None
        exchange = self.current or Exchange(self.peer, self.last_read)
        if reply is None:
            reply = self.app.refuse(exchange, 400, "malformed_http", f"malformed request: {exc}")
        self._fail(exchange, reply=reply)

    def _fail(
        self,
        exchange: Exchange,
        status: int = 0,
        reason: str = "",
        message: str = "",
        *,
        reply: Reply | None = None,
    ) -> None:
        """Refuse `exchange`, read nothing more, close after its answer."""
        if reply is None:
            reply = self.app.refuse(exchange, status, reason, message)
        self.input_closed = True
        self.current = None
        self._refused(exchange, reply, close=True)
        if exchange not in self.queue:
            self.queue.append(exchange)
        self._advance()

    # -- deadlines (ingest.slow_clients) ------------------------------------------------------

    def _deadline(self) -> float | None:
        """When the connection's current deadline passes (None: no deadline now)."""
        if self.busy or self.input_closed:
            return None
        current = self.current
        if current is not None:
            if current.reply is not None:
                return current.refused_at + self.timeouts.lingering
            if current.headers_done:
                return self.last_read + self.timeouts.body
        if self.head_since is not None:
            return self.head_since + self.timeouts.header
        if self.queue:
            return None
        return self.idle_since + self.timeouts.keepalive

    def _ensure_timer(self) -> None:
        when = self._deadline()
        if when is None or self.lost:
            return
        if self._timer is not None:
            if self._timer_when <= when:
                return  # fires first and re-arms then
            self._timer.cancel()
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._expired)

    def _expired(self) -> None:
        self._timer = None
        when = self._deadline()
        if when is None:
            return
        now = self.loop.time()
        if now < when:
            self._ensure_timer()
            return
        current = self.current
        if current is not None and current.headers_done:
            if current.reply is not None:  # lingering ran out
                self._close_now()
                return
            self._fail(current, reply=self.app.stalled(current))  # body stalled: 408
            return
        # headers not complete in time: closed without an answer
        self.app.header_timeout(now - (self.head_since or now))
        self.input_closed = True
        self.current = None
        if not self.queue:
            self.transport.close()


def _expects_continue(exchange: Exchange) -> bool:
    if exchange.http10:
        return False
    for name, value in exchange.headers:
        if name.lower() == b"expect" and value.lower() == b"100-continue":
            return True
    return False
