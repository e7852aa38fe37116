"""Settings precedence, bad values, and `python -m pipeline check` as a person runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "telemetry.toml"
    path.write_text(text)
    return str(path)


def test_defaults_put_everything_under_the_data_dir(tmp_path):
    settings = load_settings({"TELEMETRY_DATA_DIR": str(tmp_path / "var")})
    data = tmp_path / "var"
    assert settings.data_dir == str(data)
    assert settings.incoming_url == f"file://{data}/incoming"
    assert settings.published_url == f"file://{data}/published"
    assert settings.public_url == f"file://{data}/public"
    assert settings.queue_url == f"sqlite:///{data}/queue.db"
    assert settings.database_url == f"sqlite:///{data}/app.db"
    assert settings.histogram_cache == str(data / "histogram_cache")
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.s3_endpoint_url is None
    assert settings.sqs_endpoint_url is None


def test_the_sqs_endpoint_is_a_setting_of_its_own(tmp_path):
    env = {"TELEMETRY_DATA_DIR": str(tmp_path), "TELEMETRY_S3_ENDPOINT_URL": "http://minio:9000"}
    settings = load_settings(env)
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.sqs_endpoint_url is None  # AWS's own SQS, not the S3 store's endpoint
    config = write_toml(tmp_path, 'sqs_endpoint_url = "http://sqs.toml:4566"\n')
    assert load_settings({**env, "TELEMETRY_CONFIG": config}).sqs_endpoint_url == (
        "http://sqs.toml:4566"
    )
    env["TELEMETRY_SQS_ENDPOINT_URL"] = "http://sqs.env:4566"
    assert load_settings(env).sqs_endpoint_url == "http://sqs.env:4566"
    assert "TELEMETRY_SQS_ENDPOINT_URL=http://sqs.env:4566" in load_settings(env).describe()


def test_relative_data_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).data_dir == str(tmp_path / "var")


def test_precedence_is_defaults_then_toml_then_environment_then_overrides(tmp_path):
    config = write_toml(
        tmp_path,
        'queue_url = "redis://toml:6379/0"\nmax_body_bytes = 2048\nhg_base_url = "http://toml"\n'
        "queue_lease_seconds = 60\n",
    )
    env = {
        "TELEMETRY_CONFIG": config,
        "TELEMETRY_DATA_DIR": str(tmp_path),
        "TELEMETRY_QUEUE_URL": "redis://env:6379/0",
        "TELEMETRY_MAX_BODY_BYTES": "4096",
    }
    settings = load_settings(env, max_body_bytes=8192)
    assert settings.queue_url == "redis://env:6379/0"  # env beats TOML
    assert settings.max_body_bytes == 8192  # overrides beat env
    assert settings.hg_base_url == "http://toml"  # TOML beats defaults
    assert settings.queue_lease_seconds == 60.0
    assert settings.fsync_policy == "group"  # untouched default
    assert load_settings(env).max_body_bytes == 4096


def test_toml_keys_may_carry_the_environment_prefix(tmp_path):
    config = write_toml(tmp_path, 'TELEMETRY_PUBLIC_URL = "s3://bucket/public"\n')
    assert load_settings({"TELEMETRY_CONFIG": config}).public_url == "s3://bucket/public"


def test_empty_environment_values_are_ignored(tmp_path):
    settings = load_settings({"TELEMETRY_DATA_DIR": str(tmp_path), "TELEMETRY_S3_ENDPOINT_URL": ""})
    assert settings.s3_endpoint_url is None


def test_changing_only_the_data_dir_moves_every_derived_default(tmp_path):
    one = load_settings({"TELEMETRY_DATA_DIR": str(tmp_path / "one")})
    two = load_settings({"TELEMETRY_DATA_DIR": str(tmp_path / "two")})
    assert one.spool_dir != two.spool_dir and two.spool_dir.startswith(str(tmp_path / "two"))


@pytest.mark.parametrize(
    "name, value",
    [
        ("TELEMETRY_MAX_BODY_BYTES", "lots"),
        ("TELEMETRY_MAX_BODY_BYTES", "1.5"),
        ("TELEMETRY_MAX_BODY_BYTES", "0"),
        ("TELEMETRY_QUEUE_LEASE_SECONDS", "-3"),
        ("TELEMETRY_QUEUE_LEASE_SECONDS", "nan"),
        ("TELEMETRY_QUEUE_MAX_ATTEMPTS", "0"),
        ("TELEMETRY_DEDUP_WINDOW_DAYS", "-1"),
        ("TELEMETRY_FSYNC_POLICY", "sometimes"),
    ],
)
def test_bad_environment_value_names_the_setting(tmp_path, name, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({"TELEMETRY_DATA_DIR": str(tmp_path), name: value})
    assert caught.value.setting == name
    assert str(caught.value).startswith(f"{name}: ")


@pytest.mark.parametrize(
    "toml, setting",
    [
        ('max_body_bytes = "big"', "TELEMETRY_MAX_BODY_BYTES"),
        ("max_body_bytes = 1.5", "TELEMETRY_MAX_BODY_BYTES"),
        ("max_body_bytes = true", "TELEMETRY_MAX_BODY_BYTES"),
        ("queue_url = 5", "TELEMETRY_QUEUE_URL"),
        ("queue_url = [1, 2]", "TELEMETRY_QUEUE_URL"),
        ('colour = "blue"', "TELEMETRY_CONFIG"),
        ("this is not toml", "TELEMETRY_CONFIG"),
    ],
)
def test_bad_toml_names_the_setting(tmp_path, toml, setting):
    config = write_toml(tmp_path, toml + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({"TELEMETRY_CONFIG": config, "TELEMETRY_DATA_DIR": str(tmp_path)})
    assert caught.value.setting == setting


def test_missing_config_file_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="^TELEMETRY_CONFIG: .*does not exist"):
        load_settings({"TELEMETRY_CONFIG": str(tmp_path / "nope.toml")})


def test_unknown_override_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="TELEMETRY_COLOUR"):
        load_settings({"TELEMETRY_DATA_DIR": str(tmp_path)}, colour="blue")


def test_describe_hides_secrets_and_url_passwords(tmp_path):
    settings = load_settings(
        {
            "TELEMETRY_DATA_DIR": str(tmp_path),
            "TELEMETRY_CLIENT_ADDRESS_HASH_KEY": "hunter2",
            "TELEMETRY_DATABASE_URL": "postgresql://app:s3cret@db:5432/telemetry",
        }
    )
    text = settings.describe()
    assert "hunter2" not in text and "s3cret" not in text
    assert "TELEMETRY_DATABASE_URL=postgresql://app:***@db:5432/telemetry" in text
    assert f"TELEMETRY_DATA_DIR={tmp_path}" in text


# -- python -m pipeline check --------------------------------------------------------------------


def run_check(env_updates: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(env_updates)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *(args or ("check",))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_check_reports_ok_for_the_embedded_defaults(tmp_path):
    result = run_check({"TELEMETRY_DATA_DIR": str(tmp_path / "var")})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith("OK ") for line in lines)
    assert any("TELEMETRY_QUEUE_URL" in line for line in lines)


def test_check_prints_one_line_per_broken_setting_and_exits_1(tmp_path, moto):
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    result = run_check(
        {
            "TELEMETRY_DATA_DIR": str(tmp_path / "var"),
            "TELEMETRY_PUBLISHED_URL": f"file://{blocker}/published",
            "TELEMETRY_INCOMING_URL": "s3://missing-bucket/incoming",
            "TELEMETRY_QUEUE_URL": "kafka://broker/topic",
            "TELEMETRY_S3_ENDPOINT_URL": moto.endpoint,
        }
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 3
    assert failures[0].startswith(
        "FAIL TELEMETRY_INCOMING_URL: bucket 'missing-bucket' does not exist"
    )
    assert failures[1].startswith("FAIL TELEMETRY_PUBLISHED_URL: ") and str(blocker) in failures[1]
    assert failures[2].startswith("FAIL TELEMETRY_QUEUE_URL: unknown scheme")
    assert sum(line.startswith("OK ") for line in result.stdout.splitlines()) == 3


def test_check_reports_a_bad_setting_value_in_one_line(tmp_path):
    result = run_check({"TELEMETRY_DATA_DIR": str(tmp_path), "TELEMETRY_MAX_BODY_BYTES": "huge"})
    assert result.returncode == 1
    assert (
        result.stdout.strip()
        == "FAIL TELEMETRY_MAX_BODY_BYTES: expected a whole number, got 'huge'"
    )
    assert "Traceback" not in result.stderr


def test_check_reports_an_unusable_database(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    result = run_check(
        {
            "TELEMETRY_DATA_DIR": str(tmp_path / "var"),
            "TELEMETRY_DATABASE_URL": f"sqlite:///{blocker}/app.db",
        }
    )
    assert result.returncode == 1
    [failure] = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failure.startswith("FAIL TELEMETRY_DATABASE_URL: ")


def test_config_shows_the_effective_settings(tmp_path):
    result = run_check({"TELEMETRY_DATA_DIR": str(tmp_path / "var")}, "config")
    assert result.returncode == 0
    assert f"TELEMETRY_DATA_DIR={tmp_path / 'var'}" in result.stdout
    assert "check" in run_check({}, "--help").stdout
