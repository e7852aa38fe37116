"""Where runs execute: `local` (processes on this machine, the default) and `ec2`.

`RunnerPool` is what the service holds: one runner per kind, made on first use (an EC2 client
only when a job runs on EC2), and the one place that knows which runner a lost run was.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping

from scheduler.runners.base import LostRun, Runner, RunOutcome, RunRequest

__all__ = ["LostRun", "RunOutcome", "RunRequest", "Runner", "RunnerPool", "make_runner"]

RUNNER_CLASSES = {
    "local": "scheduler.runners.local:LocalRunner",
    "ec2": "scheduler.runners.ec2:EC2Runner",
}


def runner_class(kind: str) -> type[Runner]:
    """The Runner subclass of `kind`, imported on demand (ec2 pulls in boto3)."""
    if kind not in RUNNER_CLASSES:
        raise ValueError(f"unknown runner {kind!r}: use local or ec2")
    module, name = RUNNER_CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def make_runner(kind: str, settings, config) -> Runner:
    return runner_class(kind)(settings, config)


class RunnerPool:
    """One runner per kind; `runners` overrides kinds (tests and benchmarks pass fakes)."""

    def __init__(self, settings, config, runners: Mapping[str, Runner] | None = None) -> None:
        self.settings = settings
        self.config = config
        self._runners: dict[str, Runner] = dict(runners or {})
        self._lock = threading.Lock()

    def get(self, kind: str) -> Runner:
        with self._lock:
            if kind not in self._runners:
                self._runners[kind] = make_runner(kind, self.settings, self.config)
            return self._runners[kind]

    def _class_of(self, kind: str) -> type[Runner]:
        with self._lock:
            given = self._runners.get(kind)
        return type(given) if given is not None else runner_class(kind)

    def recorded_fields(self) -> tuple[str, ...]:
        """Every run-row field some runner records while a run goes (see `Runner.recorded_fields`)."""
        fields: list[str] = []
        for kind in RUNNER_CLASSES:
            fields += [f for f in self._class_of(kind).recorded_fields if f not in fields]
        return tuple(fields)

    def abandon(self, lost: LostRun) -> None:
        """Hand a lost run to each runner whose recorded facts it carries (cleanup is theirs)."""
        for kind in RUNNER_CLASSES:
            if any(lost.recorded.get(field) for field in self._class_of(kind).recorded_fields):
                self.get(kind).abandon(lost)
