"""Where runs execute: `local` (processes on this machine, the default) and `ec2`."""

from __future__ import annotations

from scheduler.runners.base import Runner, RunOutcome, RunRequest

__all__ = ["RunOutcome", "RunRequest", "Runner", "make_runner"]


def make_runner(kind: str, settings, config) -> Runner:
    if kind == "local":
        from scheduler.runners.local import LocalRunner

        return LocalRunner(settings, config)
    if kind == "ec2":
        from scheduler.runners.ec2 import EC2Runner

        return EC2Runner(settings, config)
    raise ValueError(f"unknown runner {kind!r}: use local or ec2")
