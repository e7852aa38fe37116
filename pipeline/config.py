"""One settings object for every service: built-in defaults < TOML file < environment.

The environment names (`TELEMETRY_*`) are part of the public contract (README "Configuration", docs/contracts.md). A TOML
file named by `TELEMETRY_CONFIG` may set the same keys in lower case without the prefix
(`queue_url = "redis://..."`). Derived defaults (the stores under the data directory) are
computed after the data directory itself is known, so changing only `TELEMETRY_DATA_DIR`
moves everything.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.errors import ConfigError

ENV_PREFIX = "TELEMETRY_"
SECRET_KEY_FILE = "dashboard-secret-key"
"""Where the dashboard keeps the random session key it makes when TELEMETRY_SECRET_KEY is unset."""


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: str = "./var"
    incoming_url: str = ""
    published_url: str = ""
    public_url: str = ""
    code_url: str = ""
    queue_url: str = ""
    database_url: str = ""
    histogram_cache: str = ""
    hg_base_url: str = "https://hg.mozilla.org"
    s3_endpoint_url: str | None = None  # S3-compatible store (MinIO, ...); unset: AWS
    sqs_endpoint_url: str | None = None  # SQS work queue only; unset: AWS
    schema_path: str = ""
    # ingest
    max_body_bytes: int = 1024 * 1024
    spool_dir: str = ""
    spool_max_file_bytes: int = 64 * 1024 * 1024
    spool_max_age_seconds: float = 60.0
    spool_cap_bytes: int = 2 * 1024 * 1024 * 1024
    spool_min_free_bytes: int = 256 * 1024 * 1024
    fsync_policy: str = "group"
    # ingest: slow clients, as a reverse proxy bounds them (nginx's client_header_timeout,
    # client_body_timeout and keepalive_timeout)
    client_header_timeout_seconds: float = 60.0
    client_body_timeout_seconds: float = 60.0
    keepalive_timeout_seconds: float = 75.0
    # the client's address (pipeline.client_address): proxies whose X-Forwarded-For entry is
    # trusted, and what may be kept of the address after convert's country lookup
    trusted_proxy_hops: int = 0
    client_address_policy: str = "drop"  # drop | hash
    client_address_hash_key: str = ""  # required by `hash`
    # convert
    max_decompressed_bytes: int = 8 * 1024 * 1024
    dedup_window_days: int = 7
    queue_lease_seconds: float = 300.0
    queue_max_attempts: int = 5
    # the reconciler (pipeline.reconcile, run by the health watcher; 0: off) and the alert on
    # incoming batches left unconverted
    reconcile_interval_seconds: float = 300.0
    reconcile_margin_seconds: float = 300.0
    stale_incoming_minutes: float = 60.0
    # extra namespace/docType pairs convert publishes (see pipeline/allow_list.py)
    allowed_doc_types: str = ""
    # scheduler / dashboard / mail
    runner: str = "local"
    smtp_url: str | None = None
    mail_from: str = "telemetry-pipeline@localhost"
    # Signs dashboard sessions. Unset: the dashboard generates a random key once and keeps it
    # in <data_dir>/dashboard-secret-key (mode 0600); see dashboard.secret_key.
    secret_key: str = ""
    signup_domains: str = ""
    alert_recipients: str = ""  # comma-separated addresses for pipeline health alerts
    health_interval_seconds: float = 3600.0
    public_base_url: str = "http://127.0.0.1:5000"
    # operations: metrics (see pipeline.metrics)
    metrics_port: int = 0  # convert, scheduler, health watcher: 0 = no metrics server
    metrics_host: str = "127.0.0.1"
    metrics_stale_minutes: float = 60.0  # convert: incoming objects older than this are "stale"
    # dashboard /metrics: who may scrape it (networks, comma-separated) or a bearer token
    metrics_allow: str = "127.0.0.1/32,::1/128"
    metrics_token: str = ""
    # dashboard under gunicorn (dashboard.server)
    dashboard_workers: int = 2  # worker processes
    dashboard_threads: int = 4  # threads per worker process
    trusted_proxies: int = 0  # reverse proxies whose X-Forwarded-* headers are trusted (ProxyFix)
    # every service: pipeline.logs
    log_format: str = "text"  # or json: one JSON object per line
    log_level: str = ""  # unset: each service's default (INFO; WARNING for CLI subcommands)
    # The only AWS credentials a scheduled job gets (as AWS_*), to read an s3:// published
    # store; give them a read-only policy. The service's own AWS_* are never passed to jobs.
    job_aws_access_key_id: str = ""
    job_aws_secret_access_key: str = ""
    job_aws_session_token: str = ""
    job_aws_region: str = ""

    def describe(self, names: Iterable[str] | None = None) -> str:
        """`NAME=value` lines (secrets hidden) for `--help` texts and `python -m pipeline
        config`: every setting, or only `names` (the ones a service reads)."""
        wanted = None if names is None else set(names)
        unknown = (wanted or set()) - {field.name for field in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"not settings: {sorted(unknown)}")
        lines = []
        for field in dataclasses.fields(self):
            if wanted is not None and field.name not in wanted:
                continue
            value = getattr(self, field.name)
            if field.name in _SECRET_FIELDS and value:
                value = "***"
            elif field.name == "secret_key":
                value = f"(unset: random, kept in {secret_key_path(self.data_dir)})"
            elif isinstance(value, str):
                value = hide_url_passwords(value)
            lines.append(f"  {ENV_PREFIX}{field.name.upper()}={value}")
        return "\n".join(lines)


COMMON_SETTINGS = ("data_dir", "log_format", "log_level")
"""Settings every service reads (the others are listed by each service's `--help`)."""


def secret_key_path(data_dir: str) -> Path:
    """The file holding the generated dashboard key when TELEMETRY_SECRET_KEY is unset."""
    return Path(data_dir) / SECRET_KEY_FILE


_SECRET_FIELDS = {
    "secret_key",
    "client_address_hash_key",
    "metrics_token",
    "job_aws_secret_access_key",
    "job_aws_session_token",
}
_URL_PASSWORD = re.compile(r"(://[^/:@]*:)[^/@]*@")


def hide_url_passwords(text: str) -> str:
    """`text` with the password of every URL in it (`postgresql://user:pw@host`) as `***`,
    for `describe()` and any log line or message that shows a setting's URL."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def _coerce(name: str, raw: object, kind: type, where: str = "") -> object:
    """Convert one raw value; a value of the wrong kind is a ConfigError naming the setting."""
    setting = f"{ENV_PREFIX}{name.upper()}"
    if raw is None:
        return None
    problem = f"expected {_KIND_NAMES[kind]}, got {raw!r}{where}"
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ConfigError(setting, problem)
    if kind is str:
        if not isinstance(raw, str):
            raise ConfigError(setting, problem)
        return raw
    try:
        value = kind(raw.strip()) if isinstance(raw, str) else kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(setting, problem) from exc
    if kind is int and isinstance(raw, float) and raw != value:
        raise ConfigError(setting, problem)
    if kind is float and not math.isfinite(value):
        raise ConfigError(setting, problem)
    return value


_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string"}

# Limits a running service needs; anything outside is a mistake worth stopping for.
_POSITIVE = (
    "max_body_bytes",
    "spool_max_file_bytes",
    "spool_max_age_seconds",
    "spool_cap_bytes",
    "client_header_timeout_seconds",
    "client_body_timeout_seconds",
    "keepalive_timeout_seconds",
    "max_decompressed_bytes",
    "queue_lease_seconds",
    "queue_max_attempts",
    "stale_incoming_minutes",
    "metrics_stale_minutes",
    "dashboard_workers",
    "dashboard_threads",
)
_NON_NEGATIVE = (
    "spool_min_free_bytes",
    "dedup_window_days",
    "reconcile_interval_seconds",
    "reconcile_margin_seconds",
    "trusted_proxy_hops",
    "metrics_port",
    "trusted_proxies",
)


def _field_kinds() -> dict[str, type]:
    kinds: dict[str, type] = {}
    for field in dataclasses.fields(Settings):
        annotation = str(field.type)
        kinds[field.name] = int if annotation == "int" else float if annotation == "float" else str
    return kinds


def _read_toml(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError("TELEMETRY_CONFIG", f"file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("TELEMETRY_CONFIG", f"{path} is not valid TOML: {exc}") from exc


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the effective settings; `overrides` (from CLI flags) win over everything."""
    env = os.environ if env is None else env
    kinds = _field_kinds()
    values: dict[str, object] = {}
    config_file = env.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        for key, raw in _read_toml(config_file).items():
            name = key.lower().removeprefix(ENV_PREFIX.lower())
            if name not in kinds:
                raise ConfigError("TELEMETRY_CONFIG", f"unknown setting {key!r} in {config_file}")
            values[name] = _coerce(name, raw, kinds[name], f" in {config_file}")
    for name, kind in kinds.items():
        raw = env.get(f"{ENV_PREFIX}{name.upper()}")
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, kind)
    for name, raw in overrides.items():
        if name not in kinds:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}", "is not a known setting")
        if raw is not None:
            values[name] = _coerce(name, raw, kinds[name])
    return _with_derived_defaults(Settings(**values))


def _with_derived_defaults(settings: Settings) -> Settings:
    data = Path(settings.data_dir).expanduser().resolve()
    derived = {
        "incoming_url": f"file://{data}/incoming",
        "published_url": f"file://{data}/published",
        "public_url": f"file://{data}/public",
        "code_url": f"file://{data}/code",
        "queue_url": f"sqlite:///{data}/queue.db",
        "database_url": f"sqlite:///{data}/app.db",
        "histogram_cache": str(data / "histogram_cache"),
        "spool_dir": str(data / "spool"),
        "schema_path": str(Path(__file__).with_name("telemetry_schema.json")),
    }
    missing = {k: v for k, v in derived.items() if not getattr(settings, k)}
    from pipeline.logs import check_format, check_level

    check_format(settings.log_format)
    if settings.log_level:
        check_level(settings.log_level)
    if settings.fsync_policy not in ("always", "group", "none"):
        raise ConfigError("TELEMETRY_FSYNC_POLICY", "must be one of always, group, none")
    if settings.client_address_policy not in ("drop", "hash"):
        raise ConfigError("TELEMETRY_CLIENT_ADDRESS_POLICY", "must be one of drop, hash")
    if settings.client_address_policy == "hash" and not settings.client_address_hash_key:
        raise ConfigError(
            "TELEMETRY_CLIENT_ADDRESS_HASH_KEY",
            "must be set (a long random string) when TELEMETRY_CLIENT_ADDRESS_POLICY is hash",
        )
    for name in _POSITIVE:
        if getattr(settings, name) <= 0:
            raise ConfigError(
                f"{ENV_PREFIX}{name.upper()}", f"must be positive, got {getattr(settings, name)}"
            )
    for name in _NON_NEGATIVE:
        if getattr(settings, name) < 0:
            raise ConfigError(
                f"{ENV_PREFIX}{name.upper()}",
                f"must not be negative, got {getattr(settings, name)}",
            )
    return dataclasses.replace(settings, data_dir=str(data), **missing)
