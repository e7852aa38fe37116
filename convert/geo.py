"""The client's country, as the original server's `geoCountry`, and the end of its address.

Ingest keeps the client's address in each record (`Remote-Addr`, see pipeline.client_address).
`GeoLocator.locate` runs on every record as the batch is read, before anything can be written
anywhere: it looks the address up in GeoIP2Fast's country database (MaxMind GeoLite2 data,
IPv4 and IPv6, installed with the `geoip2fast` package from PyPI, read offline) and returns
the record with the country (`Geo-Country`) in place of the address, or of its keyed hash
under TELEMETRY_CLIENT_ADDRESS_POLICY=hash. So published records, `errors/` records and
parked batches never hold the address, and a record converted again later (a parked batch,
a replayed error record) keeps its country. `annotate` puts the country into the payload:
`info.geoCountry` for payloads with an `info` object (as the original server did), else
`meta.geoCountry`. Unknown, private and reserved addresses give `??`; a record with no address
(one stored before ingest kept it) gets no `geoCountry`.

The database (about 75 MiB in memory, `bench/geo_lookup.py`) is loaded once per process, at
the first lookup.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

from pipeline.client_address import (
    ADDRESS_HASH_HEADER,
    ADDRESS_HEADER,
    COUNTRY_HEADER,
    FORWARDED_FOR,
    UNKNOWN_COUNTRY,
    AddressPolicy,
)
from pipeline.records import Record

log = logging.getLogger(__name__)

DATA_FILE = "geoip2fast-ipv6.dat.gz"  # the package's country database with IPv6 ranges too
ADDRESS_HEADERS = (ADDRESS_HEADER, FORWARDED_FOR)  # FORWARDED_FOR: records from older ingests
GEO_FIELD = "geoCountry"


@functools.cache
def _reader():
    from geoip2fast import GeoIP2Fast

    reader = GeoIP2Fast(geoip2fast_data_file=DATA_FILE, verbose=False)
    log.info("GeoIP country database loaded: %s", reader.get_database_info().get("source_info"))
    return reader


def country_of_address(address: str) -> str:
    """The ISO country code of `address`, or `??` (private, reserved, unknown or malformed)."""
    try:
        code = _reader().lookup(address.strip()).country_code
    except Exception:  # noqa: BLE001 - a malformed address is the client's, never the batch's
        return UNKNOWN_COUNTRY
    if not isinstance(code, str) or len(code) != 2 or not code.isalpha():
        return UNKNOWN_COUNTRY
    return code.upper()


class GeoLocator:
    """Replace the address in each record by its country (and its hash, if configured)."""

    def __init__(self, policy: AddressPolicy | None = None) -> None:
        self.policy = policy or AddressPolicy()

    @classmethod
    def from_settings(cls, settings) -> GeoLocator:
        return cls(AddressPolicy.from_settings(settings))

    def locate(self, record: Record) -> Record:
        headers = record.headers
        if not any(name in headers for name in ADDRESS_HEADERS):
            return record
        kept = {k: v for k, v in headers.items() if k not in ADDRESS_HEADERS}
        address = headers.get(ADDRESS_HEADER)
        if address and COUNTRY_HEADER not in kept:
            kept[COUNTRY_HEADER] = country_of_address(address)
        hashed = self.policy.kept(address)
        if hashed:
            kept[ADDRESS_HASH_HEADER] = hashed
        return dataclasses.replace(record, headers=kept)


_RAW_ADDRESS = re.compile(rb'"(?:Remote-Addr|X-Forwarded-For)":"([^"\\]*)"')


def mask_addresses(raw: bytes) -> bytes:
    """`raw` record bytes that could not be parsed (a corrupt batch's tail, kept in
    errors/corrupt_batch) with the value of every address header overwritten by `x`s of the
    same length, so offsets in it stay right and the address is gone."""
    return _RAW_ADDRESS.sub(lambda m: m.group(0).replace(m.group(1), b"x" * len(m.group(1))), raw)


def annotate(payload: dict[str, Any], headers: Mapping[str, str]) -> None:
    """Put the record's country into its payload (`info.geoCountry`, else `meta.geoCountry`);
    records from before ingest kept the address have none and are left as they are."""
    country = headers.get(COUNTRY_HEADER)
    if country is None:
        return
    info = payload.get("info")
    if isinstance(info, dict):
        info[GEO_FIELD] = country
        return
    meta = payload.get("meta")
    if isinstance(meta, dict):
        meta[GEO_FIELD] = country
    elif meta is None:
        payload["meta"] = {GEO_FIELD: country}
