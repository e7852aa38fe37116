"""Geo and privacy: ingest records the client's address, convert turns it into a country and
nothing keeps the address: not the published records, not errors/, not the access log.

81.2.69.160 is in a range GeoLite2 places in the United Kingdom; 203.0.113.9 (TEST-NET-3) plays
an address a client claims for itself in X-Forwarded-For.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid

import aiohttp
import pytest

from convert.geo import GeoLocator, country_of_address
from ingest.app import create_app
from ingest.server import running
from pipeline.client_address import AddressPolicy, client_address, hash_address
from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.logs import make_formatter
from pipeline.records import Record, iter_records
from pipeline.stores import open_store
from tests.support.convert import read_all, run_convert
from tests.support.incoming import incoming_records

CLIENT = "81.2.69.160"
CLAIMED = "203.0.113.9"
ADDRESSES = (CLIENT, CLAIMED, "127.0.0.1")


def v1_payload() -> bytes:
    info = {"reason": "idle-daily", "appName": "Firefox", "appVersion": "115.0"}
    return json.dumps({"ver": 1, "info": info}).encode()


async def post_all(url: str, forwarded: str) -> None:
    headers = {"X-Forwarded-For": forwarded}
    submissions = [
        (f"/submit/telemetry/{uuid.uuid4()}", v1_payload()),
        (f"/submit/telemetry/{uuid.uuid4()}", b"{not json"),
        (f"/submit/firefox-desktop/baseline/1/{uuid.uuid4()}", b'{"ping_info": {}}'),
    ]
    async with aiohttp.ClientSession() as session:
        for path, body in submissions:
            async with session.post(url + path, data=body, headers=headers) as response:
                assert response.status == 200
        async with session.get(url + "/nothing-here", headers=headers) as response:
            assert response.status == 404


def access_lines(caplog) -> list[str]:
    """The access log's lines as TELEMETRY_LOG_FORMAT=json writes them (every field)."""
    formatter = make_formatter("json")
    return [formatter.format(r) for r in caplog.records if r.name == "ingest.access"]


async def test_country_from_the_trusted_hop_and_the_address_kept_nowhere(data_dir, caplog):
    caplog.set_level(logging.INFO, logger="ingest.access")
    settings = load_settings(trusted_proxy_hops=1)
    app = create_app(settings, count_hourly=False)
    async with running(app) as url:
        # the client claims CLAIMED; the one trusted proxy appends the address it saw
        await post_all(url, f"{CLAIMED}, {CLIENT}")
    records = incoming_records(settings)
    assert [r.headers["Remote-Addr"] for r in records] == [CLIENT] * 3
    assert not any("X-Forwarded-For" in r.headers for r in records)
    lines = access_lines(caplog)
    assert len(lines) == 4 and all("remote" not in json.loads(line) for line in lines)

    converted = run_convert({"TELEMETRY_TRUSTED_PROXY_HOPS": "1"}, "--drain")
    assert converted.returncode == 0, converted.stderr[-2000:]
    outputs = read_all(open_store(settings.published_url))
    docs = {
        key: [json.loads(line.split(b"\t", 1)[-1]) for line in found]
        for key, found in outputs.items()
    }
    [legacy] = next(v for k, v in docs.items() if k.startswith("idle_daily/"))
    assert legacy["info"]["geoCountry"] == "GB"
    [glean] = next(v for k, v in docs.items() if k.startswith("namespaces/firefox_desktop/"))
    assert glean["meta"]["geoCountry"] == "GB"
    [error] = next(v for k, v in docs.items() if k.startswith("errors/bad_json/"))
    assert error["headers"]["Geo-Country"] == "GB"  # a replay keeps the country
    assert "Remote-Addr" not in error["headers"] and "Remote-Addr-Hash" not in error["headers"]

    everything = b"".join(line for found in outputs.values() for line in found).decode()
    everything += "\n".join(lines)
    for address in ADDRESSES:
        assert address not in everything


async def test_without_trusted_proxies_a_claimed_forwarded_for_is_ignored(data_dir):
    settings = load_settings()  # TELEMETRY_TRUSTED_PROXY_HOPS=0: the peer is the client
    async with running(create_app(settings, count_hourly=False), access_log=False) as url:
        await post_all(url, CLIENT)
    records = incoming_records(settings)
    assert {r.headers["Remote-Addr"] for r in records} == {"127.0.0.1"}
    located = GeoLocator().locate(records[0])
    assert located.headers["Geo-Country"] == "??"  # not GB, whatever the client claims


async def test_hash_policy_keeps_only_a_keyed_hash(data_dir, caplog):
    caplog.set_level(logging.INFO, logger="ingest.access")
    settings = load_settings(
        trusted_proxy_hops=1, client_address_policy="hash", client_address_hash_key="k3y"
    )
    async with running(create_app(settings, count_hourly=False)) as url:
        await post_all(url, f"{CLAIMED}, {CLIENT}")
    lines = [json.loads(line) for line in access_lines(caplog)]
    assert {line["remote_hash"] for line in lines} == {hash_address(CLIENT, "k3y")}
    located = GeoLocator.from_settings(settings).locate(incoming_records(settings)[0])
    assert located.headers["Remote-Addr-Hash"] == hash_address(CLIENT, "k3y")
    assert located.headers["Geo-Country"] == "GB"
    assert CLIENT not in json.dumps(dict(located.headers))


def test_a_record_from_an_older_ingest_loses_its_forwarded_for(data_dir):
    record = Record(0, "/submit/telemetry/x", {"X-Forwarded-For": CLIENT, "User-Agent": "a"}, b"")
    assert dict(GeoLocator().locate(record).headers) == {"User-Agent": "a"}


@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "expected"),
    [
        ("10.0.0.1", [], 0, "10.0.0.1"),
        ("10.0.0.1", ["1.1.1.1, 2.2.2.2"], 0, "10.0.0.1"),
        ("10.0.0.1", ["1.1.1.1, 2.2.2.2"], 1, "2.2.2.2"),
        ("10.0.0.1", ["1.1.1.1", "2.2.2.2, 3.3.3.3"], 2, "2.2.2.2"),
        ("10.0.0.1", ["2.2.2.2"], 2, "10.0.0.1"),  # fewer entries than trusted proxies
    ],
)
def test_client_address_counts_trusted_hops_from_the_right(peer, forwarded, hops, expected):
    assert client_address(peer, forwarded, hops) == expected


def test_lookups_offline_from_the_packaged_database():
    assert country_of_address(CLIENT) == "GB"
    assert len(country_of_address("2a00:1450:4001::1")) == 2  # IPv6 ranges are there too
    assert country_of_address("192.168.1.1") == "??"
    assert country_of_address("not an address") == "??"


def test_hash_policy_needs_a_key(data_dir):
    with pytest.raises(ConfigError, match="TELEMETRY_CLIENT_ADDRESS_HASH_KEY"):
        load_settings(client_address_policy="hash")
    with pytest.raises(ConfigError, match="TELEMETRY_CLIENT_ADDRESS_POLICY"):
        load_settings(client_address_policy="keep")
    assert AddressPolicy("drop").kept(CLIENT) is None


def test_a_parked_batch_keeps_the_country_not_the_address(settings):
    """Records parked for an unavailable revision are stored again as a batch: with their
    country, without the address, and published later with that country."""
    from convert.worker import EXIT_WORK_LEFT, ConvertWorker, WorkerOptions
    from tests.support.convert import gz, make_batch, stub_tools, telemetry_path
    from tests.support.convert import v1_payload as real_v1_payload

    headers = {"Content-Encoding": "gzip", "Remote-Addr": CLIENT}
    batch = make_batch([(telemetry_path(None), headers, gz(real_v1_payload()))])
    options = WorkerOptions(drain=True, drain_wait=0, park_delay=0.5)
    parking = ConvertWorker(settings, options, tools=stub_tools(False))
    parking.incoming.put("g.tpr", batch)
    parking.queue.send(json.dumps({"key": "g.tpr", "records": 1, "bytes": len(batch)}))
    assert parking.run() == EXIT_WORK_LEFT
    [parked] = [info.key for info in parking.incoming.list()]
    [record] = iter_records(parking.incoming.open(parked), parked)
    assert dict(record.headers) == {"Content-Encoding": "gzip", "Geo-Country": "GB"}

    retry = ConvertWorker(
        settings, WorkerOptions(drain=True, drain_wait=60), tools=stub_tools(True)
    )
    assert retry.run() == 0
    [lines] = [found for key, found in read_all(retry.published).items() if key.startswith("idle")]
    assert json.loads(lines[0].split(b"\t", 1)[1])["info"]["geoCountry"] == "GB"


def test_a_corrupt_batch_tail_keeps_no_address(settings):
    """Bytes that cannot be parsed go to errors/corrupt_batch as they are, except the value
    of any address header in them."""
    from convert.worker import ConvertWorker, WorkerOptions
    from pipeline.records import encode_record
    from tests.support.convert import error_entries, gz, make_batch, stub_tools
    from tests.support.convert import v1_payload as real_v1_payload

    headers = {"Remote-Addr": CLIENT, "X-Forwarded-For": f"{CLAIMED}, {CLIENT}"}
    bad = bytearray(encode_record(1, "/submit/telemetry/x", headers, gz(real_v1_payload())))
    bad[-1] ^= 0xFF  # checksum mismatch, followed by another record: not a torn tail
    good = make_batch([("/submit/telemetry/y", {"Remote-Addr": CLIENT}, b"{}")])
    worker = ConvertWorker(settings, WorkerOptions(drain=True), tools=stub_tools(True))
    worker.incoming.put("c.tpr", good + bytes(bad) + good)
    worker.queue.send(json.dumps({"key": "c.tpr", "records": 3, "bytes": 1}))
    assert worker.run() == 0
    [entry] = [e for e in error_entries(worker.published) if e["reason"] == "corrupt_batch"]
    tail = base64.b64decode(entry["body"])
    assert len(tail) == len(bad) + len(good)
    for address in (CLIENT, CLAIMED):
        assert address.encode() not in tail
    assert b'"Remote-Addr":"xxxxxxxxxxx"' in tail
