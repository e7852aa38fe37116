"""Slow and stalled clients against the real ingest server, over real sockets.

The timeouts are set short here (a fraction of a second); the assertions never measure time,
they only wait for the server to close the connection (bounded by a generous guard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import aiohttp
import pytest

from ingest.app import create_app
from ingest.server import running
from pipeline.config import load_settings

GIVE_UP = 60.0  # a guard against hanging, far above any timeout used here


def short_timeouts(**extra):
    return load_settings(
        client_header_timeout_seconds=0.3, client_body_timeout_seconds=0.3, **extra
    )


async def metric(url: str, reason: str) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
    for line in text.splitlines():
        if line.startswith(f'ingest_rejections_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def trickle_headers_until_closed(url: str) -> bool:
    """Send a request's headers a line at a time, never finishing them; True once the server
    has closed the connection (a read sees EOF or the write fails)."""
    reader, writer = await asyncio.open_connection(*address(url))
    try:
        writer.write(f"POST /submit/telemetry/{uuid.uuid4()} HTTP/1.1\r\nHost: x\r\n".encode())
        for n in range(int(GIVE_UP / 0.05)):
            try:
                data = await asyncio.wait_for(reader.read(1024), 0.05)
            except TimeoutError:
                data = None
            if data == b"":
                return True
            assert not data, f"unexpected answer before the headers ended: {data!r}"
            try:
                writer.write(f"X-Slow-{n}: y\r\n".encode())
                await writer.drain()
            except ConnectionError:
                return True
        return False
    finally:
        writer.close()


async def test_connections_that_send_headers_slowly_are_closed_and_counted(data_dir, caplog):
    caplog.set_level(logging.INFO, logger="ingest.access")
    app = create_app(short_timeouts(), count_hourly=False)
    async with running(app) as url:
        closed = await asyncio.gather(*(trickle_headers_until_closed(url) for _ in range(5)))
        assert closed == [True] * 5
        assert await metric(url, "header_timeout") == 5
    logged = [r for r in caplog.records if r.name == "ingest.access"]
    timeouts = [r for r in logged if getattr(r, "reason", None) == "header_timeout"]
    assert len(timeouts) == 5 and all(r.status == 408 for r in timeouts)


async def test_a_connection_that_never_sends_a_byte_is_closed(data_dir):
    app = create_app(short_timeouts(), count_hourly=False)
    async with running(app, access_log=False) as url:
        reader, writer = await asyncio.open_connection(*address(url))
        try:
            assert await asyncio.wait_for(reader.read(1024), GIVE_UP) == b""
        finally:
            writer.close()
        assert await metric(url, "header_timeout") == 1


async def test_a_stalled_body_gets_408_and_the_connection_is_closed(data_dir):
    settings = short_timeouts()
    app = create_app(settings, count_hourly=False)
    async with running(app, access_log=False, lingering_time=0.3) as url:
        reader, writer = await asyncio.open_connection(*address(url))
        try:
            writer.write(
                f"POST /submit/telemetry/{uuid.uuid4()} HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 1000\r\n\r\n".encode()
                + b"{" * 10
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
            assert head.startswith(b"HTTP/1.1 408 ")
            assert b"Connection: close" in head
            await asyncio.wait_for(reader.read(), GIVE_UP)  # EOF: the server closed it
        finally:
            writer.close()
        assert await metric(url, "body_timeout") == 1
        assert await metric(url, "header_timeout") == 0


async def test_timely_requests_on_a_kept_alive_connection_are_not_cut(data_dir):
    """The header deadline starts again with each request: a client that keeps sending whole
    requests (each well within the timeout) keeps its connection."""
    app = create_app(load_settings(client_header_timeout_seconds=5), count_hourly=False)
    async with running(app, access_log=False) as url:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for _ in range(3):
                async with session.post(
                    f"{url}/submit/telemetry/{uuid.uuid4()}", data=b"{}"
                ) as response:
                    assert response.status == 200
        assert await metric(url, "header_timeout") == 0


@pytest.mark.parametrize("name", ["client_header_timeout_seconds", "client_body_timeout_seconds"])
def test_a_timeout_must_be_positive(data_dir, name):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=name.upper()):
        load_settings(**{name: 0})


async def test_shutdown_does_not_wait_for_the_rest_of_a_refused_body(data_dir):
    """After a 413 aiohttp keeps reading the unread body (lingering) so the client can read the
    answer; a shutdown must not wait for that. Lingering and the shutdown timeout are set far
    beyond the guard here, so the old wait would show as a hang, not as a few seconds."""
    app = create_app(load_settings(), count_hourly=False)
    stack = contextlib.AsyncExitStack()
    url = await stack.enter_async_context(
        running(app, access_log=False, shutdown_timeout=600, lingering_time=600)
    )
    reader, writer = await asyncio.open_connection(*address(url))
    try:
        writer.write(
            f"POST /submit/telemetry/{uuid.uuid4()} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {2 * 1024 * 1024}\r\n\r\n".encode()
            + b"x" * 65536
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
        assert head.startswith(b"HTTP/1.1 413 ")
        # The client neither sends the rest nor closes: the server is lingering on it.
        await asyncio.wait_for(stack.aclose(), GIVE_UP)
    finally:
        writer.close()
