"""`--help` of each service: its own flags and only the settings it reads; `python -m
pipeline config`: every effective setting, secrets hidden."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.config import Settings


def run(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    "module, flags, reads, not_reads",
    [
        (
            "ingest",
            ["--port", "--fsync-policy"],
            ["SPOOL_DIR", "FSYNC_POLICY"],
            ["DASHBOARD_SECRET_KEY", "RUNNER", "HG_BASE_URL"],
        ),
        (
            "convert",
            ["--workers", "--drain", "--metrics-port"],
            ["HG_BASE_URL", "METRICS_PORT"],
            ["SPOOL_DIR", "DASHBOARD_SECRET_KEY", "DASHBOARD_SIGNUP_DOMAINS"],
        ),
        (
            "scheduler",
            ["--sync-seconds", "--metrics-port"],
            ["CODE_URL", "RUNNER"],
            ["SPOOL_DIR", "HG_BASE_URL", "DASHBOARD_SECRET_KEY"],
        ),
        (
            "health",
            ["--once", "--interval", "--metrics-port"],
            ["ALERT_RECIPIENTS"],
            ["SPOOL_DIR", "DASHBOARD_SECRET_KEY", "CODE_URL"],
        ),
        (
            "dashboard",
            ["--workers", "--threads", "--no-expiry"],
            ["DASHBOARD_SECRET_KEY", "DASHBOARD_TRUSTED_PROXIES", "DASHBOARD_METRICS_ALLOW"],
            ["SPOOL_DIR", "HG_BASE_URL", "QUEUE_LEASE_SECONDS"],
        ),
    ],
)
def test_help_shows_the_service_flags_and_only_the_settings_it_reads(
    module, flags, reads, not_reads, data_dir
):
    result = run(module, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for flag in [*flags, "--log-level"]:
        assert flag in text, flag
    for name in [*reads, "DATA_DIR", "LOG_FORMAT", "LOG_LEVEL"]:
        assert f"TELEMETRY_{name}=" in text, name
    for name in not_reads:
        assert f"TELEMETRY_{name}=" not in text, name
    assert "python -m pipeline config" in text


def test_config_prints_every_setting_with_secrets_hidden(data_dir):
    result = run(
        "pipeline",
        "config",
        TELEMETRY_CLIENT_ADDRESS_HASH_KEY="address-hash-secret",
        TELEMETRY_JOB_AWS_SECRET_ACCESS_KEY="job-aws-secret",
        TELEMETRY_DATABASE_URL="postgresql://app:db-password-secret@db.internal/telemetry",
        TELEMETRY_SMTP_URL="smtp://mailer:smtp-password-secret@mail.internal:587",
    )
    assert result.returncode == 0, result.stderr
    for field in Settings.__dataclass_fields__:
        assert f"TELEMETRY_{field.upper()}=" in result.stdout, field
    assert "secret" not in result.stdout
    assert "TELEMETRY_CLIENT_ADDRESS_HASH_KEY=***" in result.stdout
    assert "TELEMETRY_JOB_AWS_SECRET_ACCESS_KEY=***" in result.stdout
    assert "TELEMETRY_DATABASE_URL=postgresql://app:***@db.internal/telemetry" in result.stdout


def test_a_bad_setting_makes_config_fail_with_one_line(data_dir):
    result = run("pipeline", "config", TELEMETRY_LOG_LEVEL="LOUD")
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        "FAIL TELEMETRY_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"
    ]
