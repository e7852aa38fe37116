"""How long ingest waits for slow clients: the limits a reverse proxy would otherwise enforce.

A server that reads request headers for as long as the client keeps the connection open lets
50 clients, sending their headers a byte at a time, hold 50 connections (and file descriptors)
for ever: the "slowloris" attack a reverse proxy's `client_header_timeout` exists for. Each
ingest connection (`ingest.http.HttpConnection`) therefore has one deadline at a time,
depending on what it is waiting for:

- `header`: from the moment the connection opens, or the first byte of its next request
  arrives, until that request's headers are complete. Past it the connection is closed
  without an answer, counted under the rejection reason `header_timeout` and logged as a 408
  (as nginx logs it);
- `body`: between two reads of a request body (a reverse proxy's `client_body_timeout`: the
  time between reads, not for the whole body). Past it the request is answered 408
  (`body_timeout`) and the connection closed;
- `keepalive`: an idle kept-alive connection is closed silently;
- `lingering`: after a refusal the rest of an unread body is read and discarded for this long,
  so that a client still sending gets to read the answer instead of a connection reset; a
  shutdown ends it at once.
"""

from __future__ import annotations

import dataclasses

HEADER_TIMEOUT_REASON = "header_timeout"
BODY_TIMEOUT_REASON = "body_timeout"
LINGERING_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """The connection deadlines, in seconds (see the module docstring)."""

    header: float = 60.0
    body: float = 60.0
    keepalive: float = 75.0
    lingering: float = LINGERING_SECONDS

    @classmethod
    def from_settings(cls, settings, lingering: float = LINGERING_SECONDS) -> Timeouts:
        return cls(
            header=settings.client_header_timeout_seconds,
            body=settings.client_body_timeout_seconds,
            keepalive=settings.keepalive_timeout_seconds,
            lingering=lingering,
        )
