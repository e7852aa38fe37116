"""Scheduler-only settings with their defaults, read from `TELEMETRY_SCHEDULER_*` variables.

They live here rather than in `pipeline.config.Settings` because only the scheduler reads
them; every one can also be set by a `python -m scheduler` flag. Sizes are bytes, durations
seconds unless the name says otherwise.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from pipeline.errors import ConfigError

ENV_PREFIX = "TELEMETRY_SCHEDULER_"


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    # How often the service re-reads the jobs table (new/changed jobs appear within this).
    sync_seconds: float = 5.0
    # How often it looks for manual runs, cancellations and expired jobs.
    dispatch_seconds: float = 1.0
    # Missed firing younger than this when the service starts: run it once; older: record missed.
    grace_seconds: float = 3600.0
    # One "timeout minute" in seconds (tests shrink it; production keeps 60).
    timeout_unit_seconds: float = 60.0
    # After SIGTERM to the run's process group, wait this long before SIGKILL.
    kill_grace_seconds: float = 10.0
    # Code tarball limits: compressed upload size, total extracted bytes, member count.
    tarball_max_bytes: int = 50 * 1024 * 1024
    extract_max_bytes: int = 500 * 1024 * 1024
    extract_max_members: int = 10_000
    # Published output guard: largest single file that may be published.
    publish_max_file_bytes: int = 100 * 1024 * 1024
    # ... and the most bytes the guard decompresses from one file (gzip, zip, ... nesting)
    # while checking it for raw data; a file expanding further is refused.
    publish_max_expanded_bytes: int = 1024 * 1024 * 1024
    # Where runs are extracted and their logs written ("" = $TELEMETRY_DATA_DIR/runs).
    work_dir: str = ""
    # Keep run directories after the run (debugging); logs are always published.
    keep_work_dirs: bool = False
    # Lines of the run log quoted in failure emails.
    mail_log_lines: int = 20
    # The sandbox of local runs (scheduler.sandbox): the bubblewrap binary, whether jobs may
    # use the network, and per-process limits (0 = no limit; processes counts every process
    # of the sandbox's uid).
    sandbox_bwrap: str = "bwrap"
    sandbox_network: bool = False
    sandbox_memory_bytes: int = 4 * 1024**3
    sandbox_processes: int = 512
    sandbox_file_bytes: int = 1024**3
    sandbox_cpu_seconds: int = 6 * 3600
    # UNSAFE: when no sandbox can be set up, run non-admins' local jobs anyway, unsandboxed,
    # with the service's rights (they can then read its secrets and every user's data).
    # Off: such runs are refused with the reason on the run.
    unsafe_no_sandbox: bool = False
    # EC2 runner.
    ec2_endpoint_url: str = ""
    ec2_region: str = ""
    ec2_image_id: str = ""
    ec2_instance_type: str = "t3.small"
    ec2_subnet_id: str = ""
    ec2_security_group_ids: str = ""  # comma separated
    ec2_key_name: str = ""
    # Extra time the service allows an instance to boot before enforcing the job timeout.
    ec2_boot_allowance_seconds: float = 300.0
    ec2_poll_seconds: float = 15.0

    def describe(self) -> str:
        return "\n".join(
            f"  {ENV_PREFIX}{f.name.upper()}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
        )


def _coerce(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return raw
    except ValueError as exc:
        kind = type(default).__name__
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}", f"expected {kind}, got {raw!r}") from exc


def load_scheduler_config(
    env: Mapping[str, str] | None = None, **overrides: object
) -> SchedulerConfig:
    """Defaults < environment < `overrides` (CLI flags; None means "not given")."""
    env = os.environ if env is None else env
    base = SchedulerConfig()
    values: dict[str, object] = {}
    for field in dataclasses.fields(SchedulerConfig):
        raw = env.get(f"{ENV_PREFIX}{field.name.upper()}")
        if raw is not None:
            values[field.name] = _coerce(field.name, raw, getattr(base, field.name))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return dataclasses.replace(base, **values)
