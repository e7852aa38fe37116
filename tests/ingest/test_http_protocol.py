"""HTTP/1.1 itself, as ingest's own connection layer (ingest.http) speaks it, over real sockets:
pipelining, requests split into many writes, malformed and oversized requests, chunked
bodies, `Expect: 100-continue`, HTTP/1.0 and `Connection: close`."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from ingest.app import create_app
from ingest.server import running
from pipeline.config import load_settings
from tests.support.incoming import incoming_records

GIVE_UP = 60.0


def submission(doc: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"POST /submit/telemetry/{doc} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


class Client:
    """A raw connection that reads whole responses (head and Content-Length body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Client:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), GIVE_UP)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = b""
        if length and not head_only:
            body = await asyncio.wait_for(self.reader.readexactly(length), GIVE_UP)
        return status, headers, body

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), GIVE_UP) == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def settings(data_dir):
    return load_settings()


async def test_pipelined_requests_are_answered_in_order_and_all_stored(settings):
    docs = [str(uuid.uuid4()) for _ in range(3)]
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        client = await Client.open(url)
        try:
            await client.send(
                submission(docs[0], b"first")
                + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                + submission(docs[1], b"second")
                + b"GET /__lbheartbeat__ HTTP/1.1\r\nHost: x\r\n\r\n"
                + submission(docs[2], b"third")
            )
            statuses = [(await client.response())[0] for _ in range(5)]
        finally:
            client.close()
    assert statuses == [200, 404, 200, 200, 200]
    assert [(r.path.rsplit("/", 1)[1], r.body) for r in incoming_records(settings)] == [
        (docs[0], b"first"),
        (docs[1], b"second"),
        (docs[2], b"third"),
    ]


async def test_a_request_split_into_many_small_writes_is_stored_whole(settings):
    doc = str(uuid.uuid4())
    body = bytes(range(256)) * 8
    request = submission(doc, body, "Content-Type: application/json\r\n")
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        client = await Client.open(url)
        try:
            for start in range(0, len(request), 7):
                await client.send(request[start : start + 7])
            status, headers, answer = await client.response()
        finally:
            client.close()
    assert (status, answer) == (200, b"OK")
    assert "connection" not in headers  # kept alive
    [record] = incoming_records(settings)
    assert record.body == body and record.headers["Content-Type"] == "application/json"


async def test_a_malformed_request_line_gets_400_and_the_connection_is_closed(settings):
    app = create_app(settings, count_hourly=False)
    async with running(app, access_log=False) as url:
        client = await Client.open(url)
        try:
            await client.send(b"POST /submit/telemetry/x HTTP/9.9 extra\r\nHost: x\r\n\r\n")
            status, headers, _ = await client.response()
            assert await client.closed_by_server()
        finally:
            client.close()
    assert status == 400 and headers["connection"] == "close"
    assert b'ingest_rejections_total{reason="malformed_http"} 1.0' in app.metrics.render()


async def test_a_chunked_body_split_across_writes_is_stored_as_sent(settings):
    doc = str(uuid.uuid4())
    head = f"POST /submit/telemetry/{doc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = [b"5\r\nhello\r\n", b"1;ext=1\r\n \r\n", b"5\r\nwor", b"ld\r\n", b"0\r\n\r\n"]
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        client = await Client.open(url)
        try:
            await client.send(head.encode())
            for chunk in chunks:
                await client.send(chunk)
            status, _, _ = await client.response()
        finally:
            client.close()
    assert status == 200
    [record] = incoming_records(settings)
    assert record.body == b"hello world"
    assert record.headers["Transfer-Encoding"] == "chunked"


async def test_headers_over_the_total_limit_get_431_and_the_connection_is_closed(settings):
    app = create_app(settings, count_hourly=False)
    many = "".join(f"X-Filler-{n}: {'f' * 1000}\r\n" for n in range(80))  # 80 KB, each < 1 KiB
    async with running(app, access_log=False) as url:
        client = await Client.open(url)
        try:
            await client.send(submission(str(uuid.uuid4()), b"{}", many))
            status, headers, _ = await client.response()
            assert await client.closed_by_server()
        finally:
            client.close()
    assert status == 431 and headers["connection"] == "close"
    assert incoming_records(settings) == []


async def test_expect_100_continue_gets_the_interim_answer_before_the_body(settings):
    doc = str(uuid.uuid4())
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        client = await Client.open(url)
        try:
            head = (
                f"POST /submit/telemetry/{doc} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                "Expect: 100-continue\r\n\r\n"
            )
            await client.send(head.encode())
            interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), GIVE_UP)
            await client.send(b"body")
            status, _, _ = await client.response()
        finally:
            client.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert status == 200
    assert [r.body for r in incoming_records(settings)] == [b"body"]


async def test_a_refused_expect_100_continue_gets_the_refusal_without_the_interim(settings):
    small = load_settings(max_body_bytes=10)
    async with running(create_app(small, count_hourly=False), access_log=False) as url:
        client = await Client.open(url)
        try:
            head = (
                f"POST /submit/telemetry/{uuid.uuid4()} HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 11\r\nExpect: 100-continue\r\n\r\n"
            )
            await client.send(head.encode())
            status, _, _ = await client.response()
        finally:
            client.close()
    assert status == 413


async def test_http_1_0_closes_unless_keep_alive_was_asked_for(settings):
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        client = await Client.open(url)
        try:
            await client.send(b"GET /__lbheartbeat__ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = await client.response()
            assert (status, headers["connection"], body) == (200, "keep-alive", b"OK")
            await client.send(b"GET /__lbheartbeat__ HTTP/1.0\r\n\r\n")
            status, headers, _ = await client.response()
            assert (status, headers["connection"]) == (200, "close")
            assert await client.closed_by_server()
        finally:
            client.close()


async def test_connection_close_is_honoured_after_the_answer(settings):
    doc = str(uuid.uuid4())
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        client = await Client.open(url)
        try:
            await client.send(submission(doc, b"{}", "Connection: close\r\n"))
            status, headers, _ = await client.response()
            assert await client.closed_by_server()
        finally:
            client.close()
    assert status == 200 and headers["connection"] == "close"
    assert len(incoming_records(settings)) == 1


async def test_head_gets_the_headers_of_get_without_a_body(settings):
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        client = await Client.open(url)
        try:
            await client.send(b"HEAD /__version__ HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = await client.response(head_only=True)
            await client.send(b"GET /__lbheartbeat__ HTTP/1.1\r\nHost: x\r\n\r\n")
            after = await client.response()
        finally:
            client.close()
    assert status == 200 and int(headers["content-length"]) > 0
    assert headers["content-type"].startswith("application/json")
    assert after[0] == 200 and after[2] == b"OK"  # no stray body bytes in between
