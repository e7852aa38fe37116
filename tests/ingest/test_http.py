"""The ingest edge through a real socket: every status code, stored bytes, health endpoints."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from ingest.app import create_app
from ingest.server import running
from pipeline.config import load_settings
from pipeline.queues import open_queue
from pipeline.stores import open_store
from tests.support.incoming import incoming_records

DOC = "17caa68c-25f5-450a-9cce-7d31318846d8"


def make_settings(**overrides):
    return load_settings(**overrides)


@pytest.fixture
async def server(data_dir):
    """An in-process server on a free port; yields (url, session, app)."""
    app = create_app(make_settings(), drain_timeout=10, upload_max_backoff=0.5, count_hourly=False)
    async with running(app, access_log=False) as url:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            yield url, session, app


async def raw_exchange(url: str, request: bytes) -> tuple[int, bytes]:
    """Send bytes on a fresh socket and return the status code and the raw response."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), head


# -- 200 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/submit/telemetry/{DOC}",
        f"/submit/telemetry/{DOC}/main/Firefox/115.0/release/20230101000000?v=4",
        f"/submit/firefox-desktop/baseline/1/{DOC}",
        f"/submit/telemetry/{DOC.upper()}/",
    ],
)
async def test_each_submission_form_gets_200_and_is_stored_without_query(data_dir, path):
    settings = make_settings()
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + path, data=b'{"a": 1}') as response:
                assert response.status == 200
    records = incoming_records(settings)
    assert [r.path for r in records] == [path.partition("?")[0]]
    assert records[0].body == b'{"a": 1}'


async def test_gzip_body_is_stored_byte_identical_not_decompressed(data_dir):
    settings = make_settings()
    body = gzip.compress(json.dumps({"payload": "x" * 5000}).encode())
    before = time.time_ns() // 1_000_000
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            headers = {
                "Content-Encoding": "gzip",
                "Content-Type": "application/json; charset=UTF-8",
                "User-Agent": "Firefox/115.0",
                "X-PingSender-Version": "1.0",
                "Cookie": "secret",
            }
            async with session.post(
                f"{url}/submit/telemetry/{DOC}", data=body, headers=headers
            ) as response:
                assert response.status == 200
    after = time.time_ns() // 1_000_000
    [record] = incoming_records(settings)
    assert record.body == body
    assert record.headers["Content-Encoding"] == "gzip"
    assert record.headers["User-Agent"] == "Firefox/115.0"
    assert record.headers["X-PingSender-Version"] == "1.0"
    assert record.headers["Content-Length"] == str(len(body))
    assert "Cookie" not in record.headers
    assert before <= record.received_ms <= after


async def test_firefox_idle_daily_fixture_round_trips_byte_identical(
    data_dir, shared_fixtures: Path
):
    settings = make_settings()
    body = (shared_fixtures / "payloads" / "idle-daily-firefox-23.0.1.json.gz").read_bytes()
    path = (shared_fixtures / "payloads" / "idle-daily-firefox-23.0.1.path").read_text().strip()
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            headers = {
                "Content-Encoding": "gzip",
                "Content-Type": "application/json; charset=UTF-8",
            }
            async with session.post(url + path + "?v=4", data=body, headers=headers) as response:
                assert response.status == 200
    [record] = incoming_records(settings)
    assert record.path == path
    assert record.body == body
    assert json.loads(gzip.decompress(record.body))["info"]["reason"] == "idle-daily"


async def test_shutdown_uploads_batch_and_announces_it_on_the_work_queue(data_dir):
    settings = make_settings()
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.post(
                    f"{url}/submit/telemetry/{uuid.uuid4()}", data=b"{}"
                ) as response:
                    assert response.status == 200
    queue = open_queue(settings.queue_url)
    message = queue.claim()
    assert message is not None and queue.claim() is None
    announced = json.loads(message.body)
    [info] = list(open_store(settings.incoming_url).list(""))
    assert announced == {"key": info.key, "records": 3, "bytes": info.size}
    assert not list(Path(settings.spool_dir).glob("*.batch")) and not list(
        Path(settings.spool_dir).glob("*.open")
    )


async def test_body_exactly_at_the_limit_is_accepted(data_dir):
    settings = make_settings(max_body_bytes=1000)
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/submit/telemetry/{DOC}", data=b"x" * 1000) as response:
                assert response.status == 200


async def test_chunked_body_under_the_limit_is_accepted(data_dir):
    settings = make_settings(max_body_bytes=1000)

    async def chunks():
        for _ in range(5):
            yield b"y" * 100

    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/submit/telemetry/{DOC}", data=chunks()) as response:
                assert response.status == 200
    [record] = incoming_records(settings)
    assert record.body == b"y" * 500
    assert record.headers["Transfer-Encoding"] == "chunked"


# -- 400 / 404 / 405 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/submit/telemetry/not-a-uuid",
        f"/submit/telemetry/{DOC}/main/Firefox",
        f"/submit/telemetry/{DOC}/main/Firefox/1.0/release/2023/extra",
        f"/submit/firefox-desktop/baseline/{DOC}",
        f"/submit/firefox-desktop/baseline/one/{DOC}",
        "/submit/firefox-desktop/baseline/1/1234",
        f"/submit/Bad%20Space/baseline/1/{DOC}",
        "/submit/",
    ],
)
async def test_bad_submission_path_gets_400(server, path):
    url, session, app = server
    async with session.post(url + path, data=b"{}") as response:
        assert response.status == 400
    assert app.spool.depth_bytes == 0


@pytest.mark.parametrize("path", ["/", "/foo", "/submit", "/submitx/telemetry/" + DOC])
async def test_unknown_prefix_gets_404(server, path):
    url, session, _ = server
    async with session.post(url + path, data=b"{}") as response:
        assert response.status == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/submit/telemetry/{DOC}"),
        ("PUT", f"/submit/telemetry/{DOC}"),
        ("POST", "/__heartbeat__"),
        ("DELETE", "/metrics"),
    ],
)
async def test_wrong_method_gets_405(server, method, path):
    url, session, _ = server
    async with session.request(method, url + path) as response:
        assert response.status == 405
        assert "Allow" in response.headers


# -- 411 / 413 / 414 / 431 ----------------------------------------------------------------


async def test_post_without_length_or_chunking_gets_411(server):
    url, _, _ = server
    status, _ = await raw_exchange(
        url, f"POST /submit/telemetry/{DOC} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    assert status == 411


async def test_oversize_content_length_gets_413_before_the_body_is_sent(data_dir):
    settings = make_settings(max_body_bytes=1000)
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        # Only the headers go out: the answer must come without the server reading a body.
        request = (
            f"POST /submit/telemetry/{DOC} HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"
        )
        status, _ = await raw_exchange(url, request.encode())
    assert status == 413


async def test_oversize_chunked_body_gets_413_while_reading(data_dir):
    settings = make_settings(max_body_bytes=1000)

    async def chunks():
        for _ in range(20):
            yield b"z" * 100

    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(f"{url}/submit/telemetry/{DOC}", data=chunks()) as response:
                    status = response.status
            except aiohttp.ClientOSError:  # the server may close before the client finished sending
                pytest.fail("server closed the connection without answering 413")
    assert status == 413
    assert incoming_records(settings) == []


async def test_overlong_path_gets_414(server):
    url, session, _ = server
    async with session.post(f"{url}/submit/telemetry/{DOC}?" + "a" * 3000, data=b"{}") as response:
        assert response.status == 414


async def test_header_value_over_1kib_gets_431(server):
    url, session, _ = server
    async with session.post(
        f"{url}/submit/telemetry/{DOC}", data=b"{}", headers={"User-Agent": "u" * 1025}
    ) as response:
        assert response.status == 431
    async with session.post(
        f"{url}/submit/telemetry/{DOC}", data=b"{}", headers={"User-Agent": "u" * 1024}
    ) as response:
        assert response.status == 200


async def test_requests_the_http_parser_refuses_get_400_and_are_counted(server):
    """Beyond aiohttp's own line limits the parser answers before any handler runs; those
    refusals must still be counted and logged, not crash the access logger."""
    url, session, _ = server
    huge_header = (
        f"POST /submit/telemetry/{DOC} HTTP/1.1\r\nHost: x\r\nX-Big: {'h' * 20000}\r\n"
        "Content-Length: 2\r\n\r\n{}"
    ).encode()
    assert (await raw_exchange(url, huge_header))[0] == 400
    assert (await raw_exchange(url, b"NONSENSE\r\n\r\n"))[0] == 400
    async with session.post(f"{url}/nowhere", data=b"{}") as response:
        assert response.status == 404
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    assert 'ingest_rejections_total{reason="malformed_http"} 2.0' in text
    assert 'ingest_rejections_total{reason="unknown_prefix"} 1.0' in text
    assert 'ingest_requests_total{namespace="-",status="400"} 2.0' in text


# -- 507 and health ------------------------------------------------------------------------


async def test_spool_over_cap_gets_507_and_heartbeat_fails(data_dir):
    # Records are ~800 bytes; the cap holds two. The heartbeat fails as soon as a request of
    # the maximum size could not be taken. A long file age keeps uploads from freeing space.
    settings = make_settings(spool_cap_bytes=2000, max_body_bytes=600, spool_max_age_seconds=3600)
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{url}/submit/telemetry/{uuid.uuid4()}", data=b"a" * 600
            ) as response:
                assert response.status == 200
            async with session.get(f"{url}/__heartbeat__") as response:
                assert response.status == 200
            async with session.post(
                f"{url}/submit/telemetry/{uuid.uuid4()}", data=b"b" * 600
            ) as response:
                assert response.status == 200
            async with session.get(f"{url}/__heartbeat__") as response:
                assert response.status == 500
                report = await response.json()
            assert report["checks"]["spool"].startswith("error: spool_cap")
            for body in (b"c" * 600, b"d" * 600):
                async with session.post(
                    f"{url}/submit/telemetry/{uuid.uuid4()}", data=body
                ) as response:
                    assert response.status == 507
            async with session.get(f"{url}/metrics") as response:
                text = await response.text()
            assert 'ingest_rejections_total{reason="spool_cap"} 2.0' in text
            assert 'ingest_requests_total{namespace="telemetry",status="507"} 2.0' in text
    assert sorted(r.body[:1] for r in incoming_records(settings)) == [b"a", b"b"]


async def test_free_disk_below_floor_gets_507_and_heartbeat_fails(data_dir):
    settings = make_settings(spool_min_free_bytes=2**62)
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/submit/telemetry/{DOC}", data=b"{}") as response:
                assert response.status == 507
            async with session.get(f"{url}/__heartbeat__") as response:
                assert response.status == 500
                assert (await response.json())["checks"]["spool"].startswith("error: disk_free")
            async with session.get(f"{url}/__lbheartbeat__") as response:
                assert response.status == 200  # the process is alive; only the heartbeat fails


async def test_health_version_and_metrics_endpoints(server):
    url, session, _ = server
    async with session.get(f"{url}/__heartbeat__") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"
    async with session.get(f"{url}/__lbheartbeat__") as response:
        assert response.status == 200
    async with session.get(f"{url}/__version__") as response:
        assert response.status == 200
        assert (await response.json())["source"] == "telemetry-pipeline"
    async with session.post(
        f"{url}/submit/firefox-desktop/baseline/1/{DOC}", data=b"12345"
    ) as response:
        assert response.status == 200
    async with session.post(f"{url}/submit/telemetry/nope", data=b"{}") as response:
        assert response.status == 400
    async with session.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert 'ingest_requests_total{namespace="firefox-desktop",status="200"} 1.0' in text
    assert 'ingest_rejections_total{reason="bad_path"} 1.0' in text
    assert 'ingest_accepted_bytes_total{namespace="firefox-desktop"} 5.0' in text
    assert "ingest_spool_bytes " in text
    assert "ingest_upload_seconds_bucket" in text


async def test_accepted_submissions_are_counted_per_hour_channel_and_doc_type(data_dir):
    from pipeline.db import make_engine
    from pipeline.stats import read_counts

    settings = make_settings()
    async with running(create_app(settings), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            paths = [
                f"/submit/telemetry/{uuid.uuid4()}/main/Firefox/115.0/release/2023"
                for _ in range(2)
            ]
            paths += [
                f"/submit/telemetry/{uuid.uuid4()}/main/Firefox/115.0/weird-channel/2023",
                f"/submit/firefox-desktop/baseline/1/{uuid.uuid4()}",
                f"/submit/telemetry/{uuid.uuid4()}",
                "/submit/telemetry/nope",
            ]
            for path in paths:
                async with session.post(url + path, data=b"{}") as response:
                    await response.read()
    rows = read_counts(
        make_engine(settings.database_url), since=__import__("datetime").datetime(2000, 1, 1)
    )
    counts = {
        (source, outcome, channel, doc_type): n for _, source, outcome, channel, doc_type, n in rows
    }
    assert counts == {
        ("ingest", "accepted", "release", "main"): 2,
        ("ingest", "accepted", "OTHER", "main"): 1,
        ("ingest", "accepted", "UNKNOWN", "firefox-desktop.baseline"): 1,
        ("ingest", "accepted", "UNKNOWN", "UNKNOWN"): 1,
    }


async def test_hourly_counts_survive_an_unreachable_database():
    from ingest.hourly_counts import HourlyCounts
    from ingest.paths import parse_submission

    counts = HourlyCounts("postgresql://nobody@127.0.0.1:1/none")
    counts.add(0, parse_submission(f"/submit/telemetry/{DOC}"))
    await counts.flush()  # logs a warning, keeps the count for the next flush
    assert sum(counts._counts.values()) == 1


def test_cli_help_shows_effective_settings(data_dir):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ingest", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert "--port" in result.stdout and "--fsync-policy" in result.stdout
    assert f"TELEMETRY_SPOOL_DIR={data_dir}/spool" in result.stdout


async def test_body_cut_short_by_a_disconnect_is_not_stored(data_dir):
    settings = make_settings()
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = f"POST /submit/telemetry/{DOC} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        writer.write(head.encode() + b"x" * 500)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    assert incoming_records(settings) == []


def test_unusable_store_url_is_refused_at_start(data_dir):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="TELEMETRY_INCOMING_URL"):
        create_app(make_settings(incoming_url="ftp://example/incoming"))


def test_second_server_on_the_same_spool_exits_with_a_clear_error(data_dir):
    import subprocess
    import sys

    from ingest.spool import Spool

    holder = Spool(make_settings().spool_dir)
    holder.recover()  # takes the directory lock
    result = subprocess.run(
        [sys.executable, "-m", "ingest", "--port", "0"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    holder.unlock()
    assert result.returncode == 2
    assert "in use by another ingest process" in result.stderr


async def test_access_log_is_one_json_object_per_request_with_the_doc_id(data_dir, caplog):
    from pipeline.logs import make_formatter

    caplog.set_level("INFO", logger="ingest.access")
    async with running(create_app(make_settings(), count_hourly=False)) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/submit/telemetry/{DOC}", data=b"{}") as response:
                assert response.status == 200
            async with session.post(
                f"{url}/submit/telemetry/{DOC}", data=b"{}", headers={"X-Big": "b" * 2000}
            ) as response:
                assert response.status == 431
    as_json = make_formatter("json")
    entries = [json.loads(as_json.format(r)) for r in caplog.records if r.name == "ingest.access"]
    assert [(e["status"], e["docId"], e.get("reason")) for e in entries] == [
        (200, DOC, None),
        (431, DOC, "header_too_large"),
    ]
    assert entries[0]["namespace"] == "telemetry" and entries[0]["method"] == "POST"


async def test_announcing_on_sqs_keeps_the_consumers_dead_letter_limit(data_dir, moto):
    """SQS stores the dead-letter limit on the queue and opening re-applies it: the edge must
    open the queue with the configured limit, not the default, or it resets the converter's."""
    import boto3

    from pipeline.queues import open_work_queue

    settings = make_settings(queue_url="sqs://ingest-redrive", queue_max_attempts=2)
    open_work_queue(settings).close()  # the converter created it
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/submit/telemetry/{DOC}", data=b"{}") as response:
                assert response.status == 200
    sqs = boto3.client("sqs", endpoint_url=moto.endpoint)
    queue_url = sqs.get_queue_url(QueueName="ingest-redrive")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] in (2, "2")
    assert attributes["ApproximateNumberOfMessages"] == "1"
