"""The runner contract: execute one run to completion and say how it ended.

The service owns the database; a runner only gets a `RunRequest` (a snapshot of the job
fields it needs) and returns a `RunOutcome`. `cancel` is an Event the service sets when
someone cancels the run or the service shuts down; runners must stop promptly when it is set.
Facts a runner records while a run goes (`on_started`, e.g. an EC2 instance id) come back to
it as a `LostRun` when a restarted service finds the run orphaned, so that the runner, not the
service, decides what cleaning up means.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pipeline.config import Settings
from pipeline.errors import StoreError
from pipeline.stores import BlobStore, open_store
from scheduler.config import SchedulerConfig
from scheduler.models import RunState
from scheduler.publish import guard_scanner, publish_log

log = logging.getLogger(__name__)


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


@dataclasses.dataclass(frozen=True)
class LostRun:
    """A run found `running` by a service that did not start it: its process is gone.

    `recorded` holds the run-row fields runners record through `on_started` (the union of
    their `recorded_fields`), so the runner that set them can clean up after the run."""

    run_id: int
    recorded: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Runner(abc.ABC):
    name: str = "base"
    settings: Settings
    config: SchedulerConfig
    # Run-row fields this runner writes through `on_started`; a lost run carrying any of them
    # was this runner's, and goes to its `abandon`.
    recorded_fields: ClassVar[tuple[str, ...]] = ()

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

    def _publish_log(
        self,
        request: RunRequest,
        log_path: Path,
        notes: list[str],
        public: BlobStore | None = None,
    ) -> str | None:
        """Publish the run log through the raw-data guard (`publish_log`); its key, or None when
        the store failed: that is logged, and the run's outcome stands without its log."""
        scanner = guard_scanner(self.settings, self.config)
        try:
            if public is None:
                _, public = self._stores()
            return publish_log(
                public,
                request.job_name,
                request.run_id,
                log_path,
                scan=lambda path: scanner.scan_file(path, "the run log"),
                notes=notes,
            )
        except (StoreError, OSError) as exc:
            log.error("run %s: could not publish the log: %s", request.run_id, exc)
            return None

    @abc.abstractmethod
    def execute(
        self, request: RunRequest, on_started: Callable[[dict], None] | None = None
    ) -> RunOutcome:
        """Run to completion (blocking). `on_started(fields)` lets the runner record early facts
        (e.g. `instance_id`) on the run row while it is still going."""

    def abandon(self, lost: LostRun) -> None:  # noqa: B027 - optional hook
        """Clean up after a run found `lost` on restart (e.g. terminate its instance)."""
