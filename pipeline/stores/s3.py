"""An S3 bucket (or any S3-compatible endpoint) as a blob store.

A single PUT is atomic on S3, and so is a multipart upload (the object appears only when the
upload completes), so readers never see a half-written object. Transient failures (throttling,
5xx, dropped connections) are retried with exponential backoff by botocore's "standard" retry
mode; a whole `get` is retried with tenacity, since a body stream can break after the headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from pipeline.aws import make_client, open_error
from pipeline.config import read_setting
from pipeline.errors import ConfigError, ObjectNotFound, PipelineError, StoreError
from pipeline.stores.base import BlobStore, ObjectInfo, validate_key, validate_prefix

log = logging.getLogger(__name__)

ENDPOINT_ENV = "TELEMETRY_S3_ENDPOINT_URL"
DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024
DEFAULT_MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_STREAM_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.IncompleteReadError,
)
# A body can break after the headers, past botocore's own retries: the whole read is redone.
_RETRY_BROKEN_STREAMS = retry(
    retry=retry_if_exception_type(_STREAM_ERRORS),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.2, max=5),
    reraise=True,
)


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(BlobStore):
    def __init__(
        self,
        url: str,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        setting: str = "store URL",
        *,
        create: bool = False,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE,
        max_attempts: int = 5,
    ) -> None:
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url or read_setting("s3_endpoint_url") or None
        self.setting = setting
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )
        self._config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path"} if self.endpoint_url else {},
        )
        self._client_pid: int | None = None
        self._client_obj: Any = None
        if create:
            self._create_bucket()
        self.check()

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def _client(self) -> Any:
        # boto3 clients are thread-safe but must not cross a fork.
        if self._client_obj is None or self._client_pid != os.getpid():
            self._client_obj = make_client("s3", self.endpoint_url, self._config)
            self._client_pid = os.getpid()
        return self._client_obj

    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _fail(self, action: str, key: str, exc: Exception) -> PipelineError:
        if isinstance(exc, botocore.exceptions.ClientError) and _code(exc) in _NO_BUCKET:
            return ConfigError(self.setting, f"bucket {self.bucket!r} does not exist")
        return StoreError(f"{self.url}: {action} {key!r} failed: {exc}")

    def _create_bucket(self) -> None:
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise open_error(
                    self.setting, f"cannot create bucket {self.bucket!r}: {exc}", exc
                ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise open_error(
                self.setting, f"cannot reach S3 ({self._where()}): {exc}", exc
            ) from exc

    def _where(self) -> str:
        return self.endpoint_url or "AWS"

    def check(self) -> None:
        """Fail with one clear ConfigError when the bucket is missing or unreachable."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ConfigError(
                    self.setting, f"bucket {self.bucket!r} does not exist at {self._where()}"
                ) from exc
            if code in ("403", "AccessDenied"):
                raise ConfigError(self.setting, f"access to bucket {self.bucket!r} denied") from exc
            raise open_error(
                self.setting, f"bucket {self.bucket!r} is unusable: {exc}", exc
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise open_error(
                self.setting, f"cannot reach S3 ({self._where()}): {exc}", exc
            ) from exc

    # -- the contract ---------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail("put", key, exc) from exc

    def put_file(self, key: str, path: str) -> None:
        full = self._full(key)
        try:
            self._client.upload_file(path, self.bucket, full, Config=self.transfer_config)
        except boto3.exceptions.S3UploadFailedError as exc:
            if "NoSuchBucket" in str(exc):
                raise ConfigError(self.setting, f"bucket {self.bucket!r} does not exist") from exc
            raise StoreError(f"{self.url}: upload of {key!r} failed: {exc}") from exc
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail("upload", key, exc) from exc

    def open(self, key: str) -> BinaryIO:
        full = self._full(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise ObjectNotFound(f"{self.url}: no object {key!r}") from exc
            raise self._fail("get", key, exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._fail("get", key, exc) from exc
        return response["Body"]

    def get(self, key: str) -> bytes:
        try:
            return self._get_whole(key)
        except _STREAM_ERRORS as exc:
            raise self._fail("get", key, exc) from exc

    @_RETRY_BROKEN_STREAMS
    def _get_whole(self, key: str) -> bytes:
        # Not `with self.open(key) as stream`: botocore's StreamingBody.__enter__ returns the
        # raw urllib3 response, whose errors (ProtocolError) are not the botocore ones retried.
        stream = self.open(key)
        try:
            return stream.read()
        finally:
            stream.close()

    def get_file(self, key: str, path: str) -> None:
        try:
            self._download(key, path)
        except _STREAM_ERRORS as exc:
            raise self._fail("download", key, exc) from exc

    @_RETRY_BROKEN_STREAMS
    def _download(self, key: str, path: str) -> None:
        """Stream the object into `path`, starting the file afresh on every attempt.

        Through botocore's body (see `_get_whole`), so that a connection cut in the middle of a
        large object (MapReduce downloads whole partitions) is retried, not a failed file.
        """
        stream = self.open(key)
        try:
            with open(path, "wb") as out:
                for chunk in stream.iter_chunks(1024 * 1024):
                    out.write(chunk)
        finally:
            stream.close()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        start = len(self.prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    modified = item.get("LastModified")
                    yield ObjectInfo(
                        item["Key"][start:],
                        int(item["Size"]),
                        modified.timestamp() if modified is not None else 0.0,
                    )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail("list", prefix, exc) from exc

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise StoreError(f"list_prefixes needs a prefix ending in '/', got {prefix!r}")
        paginator = self._client.get_paginator("list_objects_v2")
        start = len(self.prefix)
        try:
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix, Delimiter="/"
            )
            for page in pages:
                for item in page.get("CommonPrefixes", []):
                    yield item["Prefix"][start:]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail("list", prefix, exc) from exc

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail("delete", key, exc) from exc

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=full)
            return True
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return False
            raise self._fail("head", key, exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._fail("head", key, exc) from exc

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None
