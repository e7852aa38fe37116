"""The client's address in a record: how ingest records it and what may remain of it.

Ingest stores the address of the client in each record (pseudo-header `Remote-Addr`) so that
convert can derive the client's country from it, as the original server's `geoCountry` did.
Nothing downstream keeps the address: convert replaces it by the country (`Geo-Country`)
before the record can reach the published store, `errors/` or a parked batch, and ingest's
access log never shows it. With TELEMETRY_CLIENT_ADDRESS_POLICY=hash both keep instead a
keyed hash of it (`Remote-Addr-Hash`, HMAC-SHA256 under TELEMETRY_CLIENT_ADDRESS_HASH_KEY),
enough to tell that two requests came from the same address and no more: an unkeyed hash of
an IPv4 address is reversed by trying all 2^32 of them.
"""

from __future__ import annotations

import hashlib
import hmac

ADDRESS_HEADER = "Remote-Addr"
ADDRESS_HASH_HEADER = "Remote-Addr-Hash"
COUNTRY_HEADER = "Geo-Country"
FORWARDED_FOR = "X-Forwarded-For"
UNKNOWN_COUNTRY = "??"  # what the original server wrote when the lookup found nothing

POLICIES = ("drop", "hash")


def hash_address(address: str, key: str) -> str:
    """A keyed hash of `address`: the same for the same address and key, 16 hex digits."""
    return hmac.new(key.encode("utf-8"), address.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class AddressPolicy:
    """What may be kept of an address: nothing (`drop`) or its keyed hash (`hash`)."""

    def __init__(self, policy: str = "drop", key: str = "") -> None:
        self.policy, self.key = policy, key

    @classmethod
    def from_settings(cls, settings) -> AddressPolicy:
        return cls(settings.client_address_policy, settings.client_address_hash_key)

    def kept(self, address: str | None) -> str | None:
        """The form of `address` that may be stored or logged: None, or its keyed hash."""
        if self.policy != "hash" or not address:
            return None
        return hash_address(address, self.key)


def client_address(peer: str | None, forwarded_for: list[str], trusted_hops: int) -> str | None:
    """The client's address: the connection's peer, or with `trusted_hops` proxies in front
    the address the outermost trusted proxy saw, i.e. the `trusted_hops`-th entry of
    X-Forwarded-For counted from the right (each proxy appends the address it received
    from). Entries further left are whatever the client claimed and are never used; with
    fewer entries than trusted hops the peer is taken, as werkzeug's ProxyFix does.
    """
    if trusted_hops <= 0:
        return peer
    entries = [part.strip() for value in forwarded_for for part in value.split(",")]
    entries = [entry for entry in entries if entry]
    if len(entries) < trusted_hops:
        return peer
    return entries[-trusted_hops]
