"""boto3 clients for the S3 store and the SQS queue, made from one session per process.

Creating a boto3 Session loads and parses the service models (hundreds of milliseconds);
sharing one per process makes opening a store or queue cheap. Sessions are not safe to use
from several threads while creating clients, hence the lock; clients themselves are, but must
not cross a fork, hence the pid check.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config

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
    global _session, _session_pid
    with _lock:
        if _session is None or _session_pid != os.getpid():
            _session = boto3.session.Session()
            _session_pid = os.getpid()
        return _session.client(
            service, endpoint_url=endpoint_url, config=config, region_name=region_name
        )
