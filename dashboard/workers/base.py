"""The provider contract: start a machine for a worker record, and stop it."""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt


@dataclasses.dataclass(frozen=True)
class LaunchResult:
    instance_id: str
    address: str  # host name or IP (ec2), workspace directory (local)
    connect_command: str  # what the user types to get a shell on it
    running: bool  # False while the machine is still booting


class WorkerProvider(abc.ABC):
    name: str

    @abc.abstractmethod
    def launch(
        self,
        worker_id: int,
        name: str,
        owner: str,
        ssh_public_key: str,
        expires_at: dt.datetime | None = None,
    ) -> LaunchResult:
        """Start a machine the owner can reach with `ssh_public_key`, due to end at `expires_at`."""

    def is_gone(self, instance_id: str) -> bool:
        """True when the machine ended without being terminated here; default: never known."""
        return False

    def extend(self, instance_id: str, expires_at: dt.datetime) -> None:
        """Tell the machine its new kill time (for one that stops itself); default: nothing."""
        return None

    def refresh(self, instance_id: str) -> LaunchResult | None:
        """The machine's current address once it has one (None: unchanged)."""
        return None

    @abc.abstractmethod
    def terminate(self, instance_id: str) -> None:
        """Stop the machine for good; stopping one that is already gone is not an error."""
