"""The scheduler's section of the settings: `TELEMETRY_SCHEDULER_*` variables and the
`[scheduler]` table of the TELEMETRY_CONFIG file, loaded by `pipeline.config.load_section`
(the same coercion, range checks and one-line errors as every other setting).

They live here rather than in `pipeline.config.Settings` because only the scheduler (and the
dashboard's uploads, for the tarball limits) reads them; some can also be set by a
`python -m scheduler` flag. Sizes are bytes, durations seconds unless the name says otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pipeline.config import describe_section, load_section, non_negative, positive

ENV_PREFIX = "TELEMETRY_SCHEDULER_"
TOML_TABLE = "scheduler"


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    # How often the service re-reads the jobs table (new/changed jobs appear within this).
    sync_seconds: float = positive(5.0)
    # How often it looks for manual runs, cancellations and expired jobs.
    dispatch_seconds: float = positive(1.0)
    # Missed firing younger than this when the service starts: run it once; older: record missed.
    grace_seconds: float = non_negative(3600.0)
    # One "timeout minute" in seconds (tests shrink it; production keeps 60).
    timeout_unit_seconds: float = positive(60.0)
    # After SIGTERM to the run's process group, wait this long before SIGKILL.
    kill_grace_seconds: float = non_negative(10.0)
    # Code tarball limits: compressed upload size, total extracted bytes, member count.
    tarball_max_bytes: int = positive(50 * 1024 * 1024)
    extract_max_bytes: int = positive(500 * 1024 * 1024)
    extract_max_members: int = positive(10_000)
    # Published output guard: largest single file that may be published.
    publish_max_file_bytes: int = positive(100 * 1024 * 1024)
    # ... and the most bytes the guard decompresses from one file (gzip, zip, ... nesting)
    # while checking it for raw data; a file expanding further is refused.
    publish_max_expanded_bytes: int = positive(1024 * 1024 * 1024)
    # Where runs are extracted and their logs written ("" = $TELEMETRY_DATA_DIR/runs).
    work_dir: str = ""
    # Keep run directories after the run (debugging); logs are always published.
    keep_work_dirs: bool = False
    # Lines of the run log quoted in failure emails.
    mail_log_lines: int = non_negative(20)
    # The sandbox of local runs (scheduler.sandbox): the bubblewrap binary, whether jobs may
    # use the network, and per-process limits (0 = no limit; processes counts every process
    # of the sandbox's uid).
    sandbox_bwrap: str = "bwrap"
    sandbox_network: bool = False
    sandbox_memory_bytes: int = non_negative(4 * 1024**3)
    sandbox_processes: int = non_negative(512)
    sandbox_file_bytes: int = non_negative(1024**3)
    sandbox_cpu_seconds: int = non_negative(6 * 3600)
    # UNSAFE: when no sandbox can be set up, run non-admins' local jobs anyway, unsandboxed,
    # with the service's rights (they can then read its secrets and every user's data).
    # Off: such runs are refused with the reason on the run.
    unsafe_no_sandbox: bool = False
    # EC2 runner (its endpoint is TELEMETRY_EC2_ENDPOINT_URL, shared with the dashboard's workers).
    ec2_region: str = ""
    ec2_image_id: str = ""
    ec2_instance_type: str = "t3.small"
    ec2_subnet_id: str = ""
    ec2_security_group_ids: str = ""  # comma separated
    ec2_key_name: str = ""
    # Extra time the service allows an instance to boot before enforcing the job timeout.
    ec2_boot_allowance_seconds: float = non_negative(300.0)
    ec2_poll_seconds: float = positive(15.0)

    def describe(self) -> str:
        """`TELEMETRY_SCHEDULER_NAME=value` lines for `python -m scheduler --help`."""
        return describe_section(self, ENV_PREFIX)


def load_scheduler_config(
    env: Mapping[str, str] | None = None, **overrides: object
) -> SchedulerConfig:
    """Defaults < `[scheduler]` table < environment < `overrides` (CLI flags; None: not given)."""
    return load_section(SchedulerConfig, ENV_PREFIX, TOML_TABLE, env, overrides)
