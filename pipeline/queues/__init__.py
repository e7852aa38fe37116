"""Work queues chosen by URL scheme: `sqlite:///path`, `sqs://name`, `redis://host:port/db`,
and `memory://name` (in this process only: for tests and single-process use)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline.errors import ConfigError
from pipeline.queues.base import Message, QueueCensus, WorkQueue

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = ["SCHEMES", "Message", "QueueCensus", "WorkQueue", "open_queue", "open_work_queue"]

#: The URL schemes `open_queue` knows (`memory` lives in one process: tests, single-process use).
SCHEMES = ("sqlite", "sqs", "redis", "rediss", "memory")

log = logging.getLogger(__name__)


def open_work_queue(settings: Settings) -> WorkQueue:
    """The pipeline's work queue, opened with every queue setting.

    Every service must open it this way, senders included: SQS keeps the dead-letter limit
    as an attribute of the queue, and opening it re-applies `max_attempts`, so a service
    that opened it with the default would silently change the limit for the consumers.

    `TELEMETRY_SQS_ENDPOINT_URL` is the SQS endpoint (unset: AWS's); the S3 endpoint is for
    the stores only.
    """
    if (
        settings.queue_url.startswith("sqs:")
        and settings.s3_endpoint_url
        and not settings.sqs_endpoint_url
    ):
        # Earlier versions sent SQS calls to the S3 endpoint: say where they go now.
        log.warning(
            "TELEMETRY_S3_ENDPOINT_URL is set but TELEMETRY_SQS_ENDPOINT_URL is not: the queue "
            "%s uses AWS's own SQS endpoint",
            settings.queue_url,
        )
    return open_queue(
        settings.queue_url,
        lease_seconds=settings.queue_lease_seconds,
        max_attempts=settings.queue_max_attempts,
        endpoint_url=settings.sqs_endpoint_url,
    )


def open_queue(
    url: str,
    *,
    lease_seconds: float = 300.0,
    max_attempts: int = 5,
    endpoint_url: str | None = None,
    setting: str = "TELEMETRY_QUEUE_URL",
) -> WorkQueue:
    """Open the queue `url` names; `endpoint_url` is for `sqs://` only (else
    `TELEMETRY_SQS_ENDPOINT_URL`, else AWS)."""
    parsed = urlparse(url)
    common = {"lease_seconds": lease_seconds, "max_attempts": max_attempts, "setting": setting}
    if parsed.scheme == "sqlite":
        from pipeline.queues.sqlite import SQLiteQueue

        # SQLAlchemy's convention: sqlite:///relative/path, sqlite:////absolute/path
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path.strip("/"):
            raise ConfigError(setting, f"{url!r} names no database file")
        return SQLiteQueue(url, path, **common)
    if parsed.scheme == "sqs":
        from pipeline.queues.sqs import SQSQueue

        if not parsed.netloc:
            raise ConfigError(setting, f"{url!r} names no queue (expected sqs://queue-name)")
        return SQSQueue(url, parsed.netloc, endpoint_url=endpoint_url, **common)
    if parsed.scheme in ("redis", "rediss"):
        from pipeline.queues.redis import RedisQueue

        return RedisQueue(url, **common)
    if parsed.scheme == "memory":
        from pipeline.queues.memory import MemoryQueue

        if not parsed.netloc:
            raise ConfigError(setting, f"{url!r} names no queue (expected memory://queue-name)")
        return MemoryQueue(url, parsed.netloc, **common)
    raise ConfigError(
        setting, f"unknown scheme in {url!r}: use sqlite://, sqs://, redis:// or memory://"
    )
