"""boto3 clients for the S3 store, the SQS queue and EC2, made from one session per process.

Creating a boto3 Session loads and parses the service models (hundreds of milliseconds);
sharing one per process makes opening a store or queue cheap. Sessions are not safe to use
from several threads while creating clients, hence the lock; clients themselves are, but must
not cross a fork, hence the pid check.

Each service has its own endpoint setting (`TELEMETRY_S3_ENDPOINT_URL`,
`TELEMETRY_SQS_ENDPOINT_URL`, ...): an S3-compatible store such as MinIO says nothing about
where the queue is. The region is boto3's own (`AWS_DEFAULT_REGION`, else the profile's
`region` in `~/.aws/config`); `default_region()` falls back to us-east-1 only when boto3 has none.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from pipeline.errors import ConfigError, ServiceUnreachable

FALLBACK_REGION = "us-east-1"
"""The region used when boto3 resolves none (SQS and EC2 clients need one; S3 does not)."""

_lock = threading.Lock()
_session: boto3.session.Session | None = None
_session_pid: int | None = None


def make_client(
    service: str,
    endpoint_url: str | None = None,
    config: Config | None = None,
    region_name: str | None = None,
) -> Any:
    """A new client for `service` from this process's shared session."""
    with _lock:
        return _shared_session().client(
            service, endpoint_url=endpoint_url, config=config, region_name=region_name
        )


def default_region() -> str:
    """The region boto3 resolves by itself (AWS_DEFAULT_REGION, else the region of the profile
    in ~/.aws/config), or us-east-1 when it resolves none."""
    with _lock:
        return _shared_session().region_name or FALLBACK_REGION


def _shared_session() -> boto3.session.Session:
    """This process's session; call with `_lock` held."""
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        _session = boto3.session.Session()
        _session_pid = os.getpid()
    return _session


_UNAVAILABLE_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown"}


def open_error(setting: str, problem: str, exc: Exception) -> ConfigError:
    """The error for a store or queue that cannot be opened: ServiceUnreachable when `exc`
    says the endpoint did not answer or is unavailable (an outage), else a ConfigError."""
    unreachable = isinstance(
        exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)
    ) or (
        isinstance(exc, botocore.exceptions.ClientError)
        and str(exc.response.get("Error", {}).get("Code", "")) in _UNAVAILABLE_CODES
    )
    return (ServiceUnreachable if unreachable else ConfigError)(setting, problem)
