"""The runner contract: execute one run to completion and say how it ended.

The service owns the database; a runner only gets a `RunRequest` (a snapshot of the job
fields it needs) and returns a `RunOutcome`. `cancel` is an Event the service sets when
someone cancels the run or the service shuts down; runners must stop promptly when it is set.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable

from pipeline.config import Settings
from pipeline.stores import BlobStore, open_store
from scheduler.models import RunState


@dataclasses.dataclass(frozen=True)
class RunRequest:
    run_id: int
    job_name: str
    owner: str
    tarball_key: str
    command: str
    output_dir: str
    timeout_seconds: float
    timeout_minutes: int
    # Whether the owner is a dashboard admin: only their local runs may go unsandboxed when no
    # sandbox can be set up (see scheduler.runners.local).
    owner_is_admin: bool = False
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event, compare=False)


@dataclasses.dataclass
class RunOutcome:
    state: RunState
    reason: str
    exit_code: int | None = None
    log_key: str | None = None
    published_files: list[str] = dataclasses.field(default_factory=list)
    instance_id: str | None = None
    log_tail: str = ""


class Runner(abc.ABC):
    name: str = "base"
    settings: Settings

    def _stores(self) -> tuple[BlobStore, BlobStore]:
        """The code store (tarballs, EC2 staging) and the public store (published output)."""
        code = open_store(
            self.settings.code_url,
            setting="TELEMETRY_CODE_URL",
            endpoint_url=self.settings.s3_endpoint_url,
        )
        public = open_store(
            self.settings.public_url,
            setting="TELEMETRY_PUBLIC_URL",
            endpoint_url=self.settings.s3_endpoint_url,
        )
        return code, public

    @abc.abstractmethod
    def execute(
        self, request: RunRequest, on_started: Callable[[dict], None] | None = None
    ) -> RunOutcome:
        """Run to completion (blocking). `on_started(fields)` lets the runner record early facts
        (e.g. `instance_id`) on the run row while it is still going."""

    def abandon(self, instance_id: str | None) -> None:  # noqa: B027 - optional hook
        """Clean up after a run found `lost` on restart (e.g. terminate its instance)."""
