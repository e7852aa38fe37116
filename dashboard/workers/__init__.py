"""Ad-hoc analysis workers: providers that start and stop machines, and their lifecycle rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dashboard.errors import WorkerProviderError
from dashboard.workers.base import LaunchResult, WorkerProvider
from pipeline.config import Settings

__all__ = ["PROVIDERS", "LaunchResult", "WorkerProvider", "get_provider"]

PROVIDERS = ("local", "ec2")


def get_provider(name: str, settings: Settings, config: Mapping[str, Any]) -> WorkerProvider:
    """The provider called `name` (`local` or `ec2`); `config` is the Flask config."""
    if name == "local":
        from dashboard.workers.local import LocalProvider

        return LocalProvider(settings, listen=config.get("WORKER_LOCAL_SSH_HOST") or "127.0.0.1")
    if name == "ec2":
        from dashboard.workers.ec2 import EC2Provider

        return EC2Provider(
            settings,
            image_id=config.get("WORKER_EC2_AMI") or "",
            instance_type=config["WORKER_EC2_INSTANCE_TYPE"],
            ssh_user=config["WORKER_EC2_SSH_USER"],
            instance_profile=config.get("WORKER_EC2_INSTANCE_PROFILE") or "",
            endpoint_url=settings.ec2_endpoint_url,
        )
    raise WorkerProviderError(
        f"unknown worker provider {name!r}: set TELEMETRY_DASHBOARD_WORKER_PROVIDER to "
        + " or ".join(PROVIDERS)
    )
