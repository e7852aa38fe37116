"""HTTP/1.1 response bytes: what the ingest server writes, built from a few templates.

The hot path answers the same `200 OK` thousands of times a second; its bytes are made once
per second (the `Date` header changes) and reused. Every other answer is rendered by
`render`. A `Reply` is what a handler decides (status, body, content type, extra header
lines); the connection adds what depends on it (`Connection: close`, HEAD without a body).
"""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import NamedTuple

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json; charset=utf-8"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: bytes = TEXT
    headers: bytes = b""  # extra header lines, each ending in CRLF

    @classmethod
    def text(cls, status: int, message: str, headers: bytes = b"") -> Reply:
        return cls(status, message.encode("utf-8", "replace") + b"\n", TEXT, headers)

    @classmethod
    def json(cls, status: int, document: object) -> Reply:
        return cls(status, json.dumps(document).encode("utf-8"), JSON)


OK = Reply(200, b"OK")

_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("ascii")
    for status in HTTPStatus
}
_date_second = -1
_date_line = b""
_ok_keepalive = b""


def _date() -> bytes:
    """The `Date:` line, formatted again only when the second changes."""
    global _date_second, _date_line, _ok_keepalive
    now = time.time()
    second = int(now)
    if second != _date_second:
        _date_second = second
        _date_line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        _ok_keepalive = _render(OK, close=False, head_only=False, date=_date_line)
    return _date_line


def ok_keepalive() -> bytes:
    """The bytes of `OK` on a connection that stays open (the hot path)."""
    _date()
    return _ok_keepalive


def render(
    reply: Reply, *, close: bool = False, head_only: bool = False, keep_alive: bool = False
) -> bytes:
    """The answer's bytes; `keep_alive` says so explicitly (for HTTP/1.0 clients that asked)."""
    if reply is OK and not close and not head_only and not keep_alive:
        return ok_keepalive()
    return _render(reply, close=close, head_only=head_only, date=_date(), keep_alive=keep_alive)


def _render(
    reply: Reply, *, close: bool, head_only: bool, date: bytes, keep_alive: bool = False
) -> bytes:
    status_line = _STATUS_LINES.get(reply.status) or f"HTTP/1.1 {reply.status} -\r\n".encode()
    parts = [
        status_line,
        b"Content-Type: ",
        reply.content_type,
        b"\r\nContent-Length: ",
        str(len(reply.body)).encode("ascii"),
        b"\r\n",
        date,
        reply.headers,
    ]
    if close:
        parts.append(b"Connection: close\r\n")
    elif keep_alive:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(reply.body)
    return b"".join(parts)
