"""Blob stores chosen by URL scheme: `file://` (directory) or `s3://bucket/prefix`, and
`memory://name` (in this process only: for tests and single-process use)."""

from __future__ import annotations

from urllib.parse import urlparse

from pipeline.errors import ConfigError
from pipeline.stores.base import BlobStore, ObjectInfo, validate_key

__all__ = ["SCHEMES", "BlobStore", "ObjectInfo", "open_store", "validate_key"]

#: The URL schemes `open_store` knows (`memory` lives in one process: tests, single-process use).
SCHEMES = ("file", "s3", "memory")


def open_store(
    url: str,
    *,
    setting: str = "store URL",
    endpoint_url: str | None = None,
    create: bool = False,
) -> BlobStore:
    """Open the store at `url`; `setting` names the configuration key in error messages.

    `endpoint_url` (else the setting TELEMETRY_S3_ENDPOINT_URL) points `s3://` at any S3-compatible
    server. A missing bucket is a ConfigError unless `create` is set (tests, first runs); a
    directory is always created.
    """
    if not isinstance(url, str) or not url:
        raise ConfigError(setting, "is empty: use file:///path or s3://bucket/prefix")
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from pipeline.stores.local import LocalStore

        path = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if not path:
            raise ConfigError(setting, f"{url!r} names no directory")
        return LocalStore(url, path, setting=setting)
    if parsed.scheme == "s3":
        from pipeline.stores.s3 import S3Store

        if not parsed.netloc:
            raise ConfigError(setting, f"{url!r} names no bucket (expected s3://bucket/prefix)")
        return S3Store(
            url,
            parsed.netloc,
            parsed.path.strip("/"),
            endpoint_url=endpoint_url,
            setting=setting,
            create=create,
        )
    if parsed.scheme == "memory":
        from pipeline.stores.memory import MemoryStore

        if not parsed.netloc:
            raise ConfigError(setting, f"{url!r} names no store (expected memory://store-name)")
        return MemoryStore(url, parsed.netloc)
    raise ConfigError(setting, f"unknown scheme in {url!r}: use file://, s3:// or memory://")
