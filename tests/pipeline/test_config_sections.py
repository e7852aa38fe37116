"""The scheduler's and the dashboard's settings sections: one TOML file, TELEMETRY_SCHEDULER_* /
TELEMETRY_DASHBOARD_* variables, the same typing, range checks and one-line errors as the
shared settings; and the common CLI flags (--config, --log-format)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dashboard.config import load_dashboard_config
from pipeline.cli import add_common_arguments, setup_logging_from_args
from pipeline.config import load_settings, read_setting
from pipeline.errors import ConfigError
from scheduler.config import load_scheduler_config

REPO = Path(__file__).resolve().parents[2]


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "telemetry.toml"
    path.write_text(text)
    return str(path)


SECTIONS_TOML = """
queue_url = "redis://toml:6379/0"

[scheduler]
sync_seconds = 30
grace_seconds = 60
sandbox_network = true

[dashboard]
worker_provider = "local"
worker_lifetime_hours = 8
session_cookie_secure = "true"
"""


def test_one_file_holds_the_shared_settings_and_both_sections(tmp_path):
    env = {"TELEMETRY_CONFIG": write_toml(tmp_path, SECTIONS_TOML)}
    assert load_settings({**env, "TELEMETRY_DATA_DIR": str(tmp_path)}).queue_url == (
        "redis://toml:6379/0"
    )
    scheduler = load_scheduler_config(env)
    assert (scheduler.sync_seconds, scheduler.grace_seconds) == (30.0, 60.0)
    assert scheduler.sandbox_network is True
    dashboard = load_dashboard_config(env)
    assert dashboard.worker_lifetime_hours == 8
    assert dashboard.flask_config()["SESSION_COOKIE_SECURE"] is True


def test_section_precedence_is_defaults_then_toml_then_environment_then_flags(tmp_path):
    env = {
        "TELEMETRY_CONFIG": write_toml(tmp_path, SECTIONS_TOML),
        "TELEMETRY_SCHEDULER_SYNC_SECONDS": "12.5",
        "TELEMETRY_DASHBOARD_WORKER_LIFETIME_HOURS": "4",
    }
    scheduler = load_scheduler_config(env, grace_seconds=5.0)
    assert scheduler.sync_seconds == 12.5  # environment beats TOML
    assert scheduler.grace_seconds == 5.0  # a flag beats TOML
    assert scheduler.kill_grace_seconds == 10.0  # untouched default
    assert load_scheduler_config(env, grace_seconds=None).grace_seconds == 60.0  # flag not given
    assert load_dashboard_config(env).worker_lifetime_hours == 4


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"TELEMETRY_SCHEDULER_SYNC_SECONDS": "0"},
            "TELEMETRY_SCHEDULER_SYNC_SECONDS: must be positive, got 0.0",
        ),
        (
            {"TELEMETRY_SCHEDULER_MAIL_LOG_LINES": "-1"},
            "TELEMETRY_SCHEDULER_MAIL_LOG_LINES: must not be negative, got -1",
        ),
        (
            {"TELEMETRY_SCHEDULER_TARBALL_MAX_BYTES": "lots"},
            "TELEMETRY_SCHEDULER_TARBALL_MAX_BYTES: expected a whole number, got 'lots'",
        ),
        (
            {"TELEMETRY_SCHEDULER_SANDBOX_NETWORK": "maybe"},
            "TELEMETRY_SCHEDULER_SANDBOX_NETWORK: expected true or false (also 1/0, yes/no, "
            "on/off), got 'maybe'",
        ),
    ],
)
def test_a_bad_scheduler_value_is_one_line_naming_the_variable(env, message):
    with pytest.raises(ConfigError) as caught:
        load_scheduler_config(env)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"TELEMETRY_DASHBOARD_WORKER_LIFETIME_HOURS": "0"},
            "TELEMETRY_DASHBOARD_WORKER_LIFETIME_HOURS: must be positive, got 0",
        ),
        (
            {"TELEMETRY_DASHBOARD_SESSION_COOKIE_SECURE": "sometimes"},
            "TELEMETRY_DASHBOARD_SESSION_COOKIE_SECURE: must be one of auto, true, false, "
            "got 'sometimes'",
        ),
        (
            {"TELEMETRY_DASHBOARD_PASSWORD_SIGNIN": "nope"},
            "TELEMETRY_DASHBOARD_PASSWORD_SIGNIN: expected true or false (also 1/0, yes/no, "
            "on/off), got 'nope'",
        ),
    ],
)
def test_a_bad_dashboard_value_is_one_line_naming_the_variable(env, message):
    with pytest.raises(ConfigError) as caught:
        load_dashboard_config(env)
    assert str(caught.value) == message


def test_a_bad_value_in_a_toml_section_names_the_variable_and_the_file(tmp_path):
    config = write_toml(tmp_path, "[scheduler]\ndispatch_seconds = -2\n")
    with pytest.raises(
        ConfigError, match="^TELEMETRY_SCHEDULER_DISPATCH_SECONDS: must be positive"
    ):
        load_scheduler_config({"TELEMETRY_CONFIG": config})
    config = write_toml(tmp_path, '[dashboard]\nworker_extend_hours = "long"\n')
    with pytest.raises(ConfigError) as caught:
        load_dashboard_config({"TELEMETRY_CONFIG": config})
    assert caught.value.setting == "TELEMETRY_DASHBOARD_WORKER_EXTEND_HOURS"
    assert f"in [dashboard] of {config}" in str(caught.value)


@pytest.mark.parametrize(
    "toml, load, message",
    [
        (
            "[scheduler]\ncolour = 1\n",
            load_scheduler_config,
            "unknown setting 'colour' in [scheduler]",
        ),
        (
            "[dashboard]\ncolour = 1\n",
            load_dashboard_config,
            "unknown setting 'colour' in [dashboard]",
        ),
        ("[schedular]\nsync_seconds = 1\n", load_settings, "unknown section [schedular]"),
        ("scheduler = 5\n", load_scheduler_config, "must be a [scheduler] table"),
    ],
)
def test_unknown_keys_and_sections_are_refused(tmp_path, toml, load, message):
    config = write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load({"TELEMETRY_CONFIG": config, "TELEMETRY_DATA_DIR": str(tmp_path)})
    assert caught.value.setting == "TELEMETRY_CONFIG"
    assert message in str(caught.value)


def test_the_old_dashboard_names_still_work_with_a_warning_and_the_new_ones_win():
    with pytest.warns(
        FutureWarning,
        match="DASHBOARD_WORKER_LIFETIME_HOURS is deprecated: set "
        "TELEMETRY_DASHBOARD_WORKER_LIFETIME_HOURS instead",
    ):
        old = load_dashboard_config({"DASHBOARD_WORKER_LIFETIME_HOURS": "6"})
    assert old.worker_lifetime_hours == 6
    both = {
        "DASHBOARD_WORKER_LIFETIME_HOURS": "6",
        "TELEMETRY_DASHBOARD_WORKER_LIFETIME_HOURS": "7",
    }
    assert load_dashboard_config(both).worker_lifetime_hours == 7


def test_an_old_dashboard_variable_that_is_no_setting_is_reported_not_dropped_silently():
    with pytest.warns(FutureWarning, match="DASHBOARD_MAX_CONTENT_LENGTH is not a setting"):
        load_dashboard_config({"DASHBOARD_MAX_CONTENT_LENGTH": "10"})


def test_create_app_takes_flask_keys_from_the_dashboard_section(settings, monkeypatch):
    from dashboard import create_app

    monkeypatch.setenv("TELEMETRY_DASHBOARD_SESSION_COOKIE_SECURE", "false")
    monkeypatch.setenv("TELEMETRY_DASHBOARD_WORKER_LIFETIME_HOURS", "3")
    app = create_app(settings)
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert app.config["WORKER_LIFETIME_HOURS"] == 3
    # a test's config dict still wins
    assert create_app(settings, {"WORKER_LIFETIME_HOURS": 9}).config["WORKER_LIFETIME_HOURS"] == 9


def test_create_app_refuses_a_bad_dashboard_variable(settings, monkeypatch):
    from dashboard import create_app

    monkeypatch.setenv("TELEMETRY_DASHBOARD_EXPIRY_INTERVAL_SECONDS", "-1")
    with pytest.raises(ConfigError, match="^TELEMETRY_DASHBOARD_EXPIRY_INTERVAL_SECONDS: must be"):
        create_app(settings)


def test_the_ec2_endpoint_is_one_shared_setting(tmp_path):
    env = {"TELEMETRY_DATA_DIR": str(tmp_path), "TELEMETRY_EC2_ENDPOINT_URL": "http://ec2:5000"}
    assert load_settings(env).ec2_endpoint_url == "http://ec2:5000"
    assert not hasattr(load_scheduler_config({}), "ec2_endpoint_url")


def test_read_setting_reads_one_setting_from_the_file_or_the_environment(tmp_path):
    config = write_toml(tmp_path, 's3_endpoint_url = "http://minio.toml:9000"\n')
    assert read_setting("s3_endpoint_url", {"TELEMETRY_CONFIG": config}) == "http://minio.toml:9000"
    env = {"TELEMETRY_CONFIG": config, "TELEMETRY_S3_ENDPOINT_URL": "http://minio.env:9000"}
    assert read_setting("s3_endpoint_url", env) == "http://minio.env:9000"
    assert read_setting("s3_endpoint_url", {}) is None
    # another setting's bad value does not matter to it
    assert read_setting("sqs_endpoint_url", {"TELEMETRY_LOG_LEVEL": "LOUD"}) is None


def run(*argv: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        cwd=REPO,
    )


def test_the_config_flag_names_the_file_for_every_section(tmp_path, data_dir):
    config = write_toml(tmp_path, SECTIONS_TOML)
    shown = run("pipeline", "--config", config, "config")
    assert shown.returncode == 0, shown.stderr
    assert "TELEMETRY_QUEUE_URL=redis://toml:6379/0" in shown.stdout
    helped = run("scheduler", "--config", config, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "TELEMETRY_SCHEDULER_SYNC_SECONDS=30.0" in helped.stdout
    assert "--config FILE" in helped.stdout and "--log-format" in helped.stdout


def test_a_missing_config_file_is_one_line(tmp_path, data_dir):
    result = run("pipeline", "--config", str(tmp_path / "nope.toml"), "config")
    assert result.returncode == 1
    assert (
        result.stdout.strip()
        == f"FAIL TELEMETRY_CONFIG: file {tmp_path / 'nope.toml'} does not exist"
    )


def test_the_log_format_flag_beats_the_setting(settings, capfd):
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    args = parser.parse_args(["--log-format", "json", "--log-level", "INFO"])
    try:
        setup_logging_from_args("test", args, settings)
        logging.getLogger("test.cli").info("run %s done", 7)
        line = capfd.readouterr().err.strip().splitlines()[-1]
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_telemetry", False)]:
            root.removeHandler(handler)
    record = json.loads(line)
    assert record["message"] == "run 7 done" and record["service"] == "test"


@pytest.mark.parametrize(
    "module",
    [
        "ingest",
        "convert",
        "scheduler",
        "scheduler.system_jobs",
        "dashboard",
        "health",
        "health.simulate",
        "launcher",
        "aggregates",
        "mapreduce.job",
        "mapreduce.cat",
        "mapreduce.export",
        "pipeline",
        "histograms",
    ],
)
def test_every_entry_point_takes_the_common_flags(module, data_dir):
    result = run(module, "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--config FILE", "--log-level LEVEL", "-v, --verbose", "--log-format"):
        assert flag in result.stdout, flag


# -- settings only the dashboard reads: moved from the shared settings into its section ----------

MOVED = [
    # field, new variable, old variable, its old top-level TOML key, a value, as read
    ("secret_key", "TELEMETRY_SECRET_KEY", "secret_key", "k" * 40, "k" * 40),
    ("signup_domains", "TELEMETRY_SIGNUP_DOMAINS", "signup_domains", "example.org", "example.org"),
    ("metrics_allow", "TELEMETRY_METRICS_ALLOW", "metrics_allow", "10.0.0.0/8", "10.0.0.0/8"),
    ("metrics_token", "TELEMETRY_METRICS_TOKEN", "metrics_token", "scrape", "scrape"),
    ("server_workers", "TELEMETRY_DASHBOARD_WORKERS", "dashboard_workers", "3", 3),
    ("server_threads", "TELEMETRY_DASHBOARD_THREADS", "dashboard_threads", "5", 5),
    ("trusted_proxies", "TELEMETRY_TRUSTED_PROXIES", "trusted_proxies", "1", 1),
]


def toml_value(value: object) -> str:
    return str(value) if isinstance(value, int) else json.dumps(value)


def another(value: object) -> object:
    """A value other than `value` and the default, to see which source won."""
    return value + 1 if isinstance(value, int) else f"{value}.new"


@pytest.mark.parametrize("field, old_variable, old_key, raw, value", MOVED)
def test_a_moved_setting_is_read_from_its_dashboard_variable_and_table(
    tmp_path, field, old_variable, old_key, raw, value
):
    new_variable = f"TELEMETRY_DASHBOARD_{field.upper()}"
    assert getattr(load_dashboard_config({new_variable: raw}), field) == value
    config = write_toml(tmp_path, f"[dashboard]\n{field} = {toml_value(value)}\n")
    assert getattr(load_dashboard_config({"TELEMETRY_CONFIG": config}), field) == value
    assert not hasattr(load_settings({"TELEMETRY_DATA_DIR": str(tmp_path)}), old_key)


@pytest.mark.parametrize("field, old_variable, old_key, raw, value", MOVED)
def test_a_moved_setting_s_old_variable_still_works_with_a_warning_naming_the_new_one(
    field, old_variable, old_key, raw, value
):
    new_variable = f"TELEMETRY_DASHBOARD_{field.upper()}"
    with pytest.warns(
        FutureWarning, match=f"^{old_variable} is deprecated: set {new_variable} instead$"
    ):
        old = load_dashboard_config({old_variable: raw})
    assert getattr(old, field) == value
    both = load_dashboard_config({old_variable: raw, new_variable: str(another(value))})
    assert getattr(both, field) == another(value)  # the new name wins


@pytest.mark.parametrize("field, old_variable, old_key, raw, value", MOVED)
def test_a_moved_setting_s_old_top_level_key_still_works_with_a_warning(
    tmp_path, field, old_variable, old_key, raw, value
):
    new_variable = f"TELEMETRY_DASHBOARD_{field.upper()}"
    config = write_toml(tmp_path, f"{old_key} = {toml_value(value)}\n")
    env = {"TELEMETRY_CONFIG": config, "TELEMETRY_DATA_DIR": str(tmp_path)}
    with pytest.warns(FutureWarning, match=f"^{old_key} at the top level .*{new_variable}"):
        assert getattr(load_dashboard_config(env), field) == value
    load_settings(env)  # the shared settings skip the old key rather than refuse the file
    newer = toml_value(another(value))
    env["TELEMETRY_CONFIG"] = write_toml(
        tmp_path, f"{old_key} = {toml_value(value)}\n[dashboard]\n{field} = {newer}\n"
    )
    with pytest.warns(FutureWarning):
        assert getattr(load_dashboard_config(env), field) == another(value)  # the table wins


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TELEMETRY_DASHBOARD_SERVER_WORKERS": "0"}, "SERVER_WORKERS: must be positive, got 0"),
        ({"TELEMETRY_DASHBOARD_SERVER_THREADS": "0"}, "SERVER_THREADS: must be positive, got 0"),
        ({"TELEMETRY_DASHBOARD_TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES: must not be negative"),
        ({"TELEMETRY_DASHBOARD_WORKERS": "0"}, "SERVER_WORKERS: must be positive, got 0"),
        ({"TELEMETRY_TRUSTED_PROXIES": "x"}, "TRUSTED_PROXIES: expected a whole number"),
    ],
)
def test_the_moved_settings_keep_their_range_rules(env, message):
    """Under the new name or the old one; the error names the new variable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old names' (tested above)
        with pytest.raises(ConfigError, match=f"^TELEMETRY_DASHBOARD_{message}"):
            load_dashboard_config(env)


def test_the_old_secret_key_variable_still_signs_the_dashboard_s_sessions(settings, monkeypatch):
    from dashboard import create_app

    monkeypatch.setenv("TELEMETRY_SECRET_KEY", "operator-chosen-key-0123456789")
    with pytest.warns(FutureWarning, match="set TELEMETRY_DASHBOARD_SECRET_KEY instead"):
        app = create_app(settings)
    assert app.secret_key == "operator-chosen-key-0123456789"
    monkeypatch.setenv("TELEMETRY_DASHBOARD_TRUSTED_PROXIES", "2")
    with pytest.warns(FutureWarning):
        assert create_app(settings).config["TRUSTED_PROXIES"] == 2


def test_dashboard_help_lists_the_moved_settings_with_the_secrets_hidden(data_dir):
    result = run(
        "dashboard",
        "--help",
        TELEMETRY_DASHBOARD_SECRET_KEY="session-signing-secret",
        TELEMETRY_DASHBOARD_METRICS_TOKEN="scrape-token-secret",
        TELEMETRY_DASHBOARD_SERVER_WORKERS="3",
    )
    assert result.returncode == 0, result.stderr
    for field, *_ in MOVED:
        assert f"TELEMETRY_DASHBOARD_{field.upper()}=" in result.stdout, field
    assert "TELEMETRY_DASHBOARD_SECRET_KEY=***" in result.stdout
    assert "TELEMETRY_DASHBOARD_METRICS_TOKEN=***" in result.stdout
    assert "-secret" not in result.stdout
    assert "TELEMETRY_SECRET_KEY=" not in result.stdout  # no longer a shared setting
    assert "(default: 3, TELEMETRY_DASHBOARD_SERVER_WORKERS)" in " ".join(result.stdout.split())
    unset = run("dashboard", "--help")
    key_file = Path(data_dir) / "dashboard-secret-key"
    assert f"TELEMETRY_DASHBOARD_SECRET_KEY=(unset: random, kept in {key_file})" in unset.stdout
    old = run("dashboard", "--help", TELEMETRY_SECRET_KEY="session-signing-secret")
    assert "TELEMETRY_DASHBOARD_SECRET_KEY=***" in old.stdout and "-secret" not in old.stdout
    assert "TELEMETRY_SECRET_KEY is deprecated: set TELEMETRY_DASHBOARD_SECRET_KEY" in old.stderr
