"""The incoming store (S3 on a private moto server) goes away while requests flow, then returns."""

from __future__ import annotations

import asyncio
import collections
import uuid

import aiohttp
import boto3
import pytest

from ingest.app import create_app
from ingest.server import running
from pipeline.config import load_settings
from tests.support.incoming import incoming_records
from tests.support.servers import MotoServer
from tests.support.waiting import wait_for_async

BUCKET = "ingest-outage"


@pytest.mark.slow
async def test_store_outage_spools_then_507_then_recovers_without_losing_a_200(
    data_dir, private_moto, monkeypatch
):
    moto = private_moto[0]
    monkeypatch.setenv("TELEMETRY_S3_ENDPOINT_URL", moto.endpoint)
    boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket=BUCKET)
    settings = load_settings(
        incoming_url=f"s3://{BUCKET}/incoming",
        max_body_bytes=20_000,
        spool_max_file_bytes=40_000,
        spool_max_age_seconds=0.5,
        spool_cap_bytes=200_000,
    )
    app = create_app(settings, drain_timeout=120, upload_max_backoff=1.0, count_hourly=False)
    spool, uploader = app.spool, app.uploader
    sent: dict[str, bytes] = {}
    acked: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()

    async def post(session: aiohttp.ClientSession, url: str) -> int:
        """POST one fresh submission; remember the ones answered 200."""
        doc_id = str(uuid.uuid4())
        body = (doc_id * 250).encode()  # 9 KB
        sent[doc_id] = body
        async with session.post(f"{url}/submit/telemetry/{doc_id}", data=body) as response:
            statuses[response.status] += 1
            if response.status == 200:
                acked.append(doc_id)
            return response.status

    phase = {"name": "up"}
    by_phase: collections.defaultdict[str, collections.Counter[int]] = collections.defaultdict(
        collections.Counter
    )
    stop_flow = asyncio.Event()

    async def flow(session: aiohttp.ClientSession, url: str) -> None:
        while not stop_flow.is_set():
            name = phase["name"]
            by_phase[name][await post(session, url)] += 1
            await asyncio.sleep(0.01)  # pacing only: keeps the backlog from growing too fast

    async with running(app, access_log=False) as url:
        async with aiohttp.ClientSession() as session:
            flows = [asyncio.ensure_future(flow(session, url)) for _ in range(3)]
            try:
                # Store up: accepted and uploaded.
                await wait_for_async(
                    lambda: by_phase["up"][200] >= 10 and uploader.backlog == 0, 120
                )

                # Store down while requests flow: 200s go to the spool until the cap answers 507.
                phase["name"] = "down"
                moto.stop()
                await wait_for_async(lambda: by_phase["down"][507] >= 1, 120)
                assert by_phase["down"][200] >= 5, by_phase
                async with session.get(f"{url}/__heartbeat__") as response:
                    assert response.status == 500
                    report = await response.json()
                assert report["checks"]["spool"].startswith("error: spool_cap")
                await wait_for_async(
                    lambda: not uploader.healthy, 120
                )  # an upload attempt has failed

                # Store back on the same port: the backlog uploads by itself and 200s resume.
                private_moto.append(MotoServer(port=moto.port).start())
                phase["name"] = "back"
                await wait_for_async(lambda: by_phase["back"][200] >= 10, 180)
                stop_flow.set()
                await asyncio.gather(*flows)
                await wait_for_async(lambda: spool.refusal(settings.max_body_bytes) is None, 180)
                async with session.get(f"{url}/__heartbeat__") as response:
                    assert response.status == 200
                await wait_for_async(lambda: uploader.healthy, 120)
            finally:
                stop_flow.set()
                await asyncio.gather(*flows, return_exceptions=True)
    assert set(statuses) <= {200, 507}

    found: collections.Counter[str] = collections.Counter()
    for record in incoming_records(settings, endpoint_url=moto.endpoint):
        doc_id = record.path.rsplit("/", 1)[1]
        assert record.body == sent[doc_id]
        found[doc_id] += 1
    assert [d for d in acked if found[d] != 1] == []
    assert set(found) == set(acked)
