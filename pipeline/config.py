"""One settings machinery for every service: built-in defaults < TOML file < environment.

`Settings` holds what several services read (`TELEMETRY_*`); a service with settings of its
own declares them as a section dataclass with the same field helpers (`positive`,
`non_negative`, `one_of`) and loads it with `load_section`: the scheduler's
(`scheduler.config`, `TELEMETRY_SCHEDULER_*`, TOML table `[scheduler]`) and the dashboard's
(`dashboard.config`, `TELEMETRY_DASHBOARD_*`, `[dashboard]`). One TOML file named by
`TELEMETRY_CONFIG` (or a service's `--config` flag) holds them all: the shared keys at its top
level in lower case without the prefix (`queue_url = "redis://..."`), each section's in its
table. The environment names are part of the public contract (README "Configuration",
docs/contracts.md): a shared setting that moves into the section of its one reader keeps its
old name working through `MOVED_SETTINGS`. This module is the one reader of `os.environ` for settings (the sections
load through it; tests/repo/test_environ_reads.py). Derived defaults (the stores under the data directory) are
computed after the data directory itself is known, so changing only `TELEMETRY_DATA_DIR`
moves everything.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import ConfigError

ENV_PREFIX = "TELEMETRY_"
SECRET_KEY_FILE = "dashboard-secret-key"
"""Where the dashboard keeps the random session key it makes when its secret_key is unset."""
SECTIONS = ("scheduler", "dashboard")
"""The TOML tables of the sections declared above this package (scheduler.config,
dashboard.config); any other table in the file is a mistake."""

MOVED_SETTINGS: dict[str, tuple[str, str]] = {
    "secret_key": ("dashboard", "secret_key"),
    "signup_domains": ("dashboard", "signup_domains"),
    "metrics_allow": ("dashboard", "metrics_allow"),
    "metrics_token": ("dashboard", "metrics_token"),
    "dashboard_workers": ("dashboard", "server_workers"),
    "dashboard_threads": ("dashboard", "server_threads"),
    "trusted_proxies": ("dashboard", "trusted_proxies"),
}
"""Shared settings that moved into the section of their one reader: old name -> (table, field).
The old `TELEMETRY_<NAME>` variable and top-level TOML key still set the field, with a
FutureWarning naming the new variable (`load_section`, the one place that does so); the
shared settings ignore them."""

S = TypeVar("S")
_RULE = "telemetry_range"


def positive(default: Any) -> Any:
    """A field whose value must be above zero."""
    return dataclasses.field(default=default, metadata={_RULE: "positive"})


def non_negative(default: Any) -> Any:
    """A field whose value must be zero or more."""
    return dataclasses.field(default=default, metadata={_RULE: "non_negative"})


def one_of(*choices: str, default: str | None = None) -> Any:
    """A text field with a fixed set of values (the first is the default unless given)."""
    chosen = choices[0] if default is None else default
    return dataclasses.field(default=chosen, metadata={_RULE: tuple(choices)})


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
    # EC2 (moto, a private endpoint): the scheduler's ec2 runner and the dashboard's ec2
    # workers; unset: AWS
    ec2_endpoint_url: str | None = None
    schema_path: str = ""
    # ingest
    max_body_bytes: int = positive(1024 * 1024)
    spool_dir: str = ""
    spool_max_file_bytes: int = positive(64 * 1024 * 1024)
    spool_max_age_seconds: float = positive(60.0)
    spool_cap_bytes: int = positive(2 * 1024 * 1024 * 1024)
    spool_min_free_bytes: int = non_negative(256 * 1024 * 1024)
    fsync_policy: str = one_of("always", "group", "none", default="group")
    # ingest: slow clients, as a reverse proxy bounds them (nginx's client_header_timeout,
    # client_body_timeout and keepalive_timeout)
    client_header_timeout_seconds: float = positive(60.0)
    client_body_timeout_seconds: float = positive(60.0)
    keepalive_timeout_seconds: float = positive(75.0)
    # the client's address (pipeline.client_address): proxies whose X-Forwarded-For entry is
    # trusted, and what may be kept of the address after convert's country lookup. The same
    # count as the dashboard's TELEMETRY_DASHBOARD_TRUSTED_PROXIES, kept apart on purpose:
    # ingest often faces clients directly while the dashboard sits behind nginx (the whole
    # reason is beside that field in dashboard.config).
    trusted_proxy_hops: int = non_negative(0)
    client_address_policy: str = one_of("drop", "hash")
    client_address_hash_key: str = ""  # required by `hash`
    # convert
    max_decompressed_bytes: int = positive(8 * 1024 * 1024)
    dedup_window_days: int = non_negative(7)
    queue_lease_seconds: float = positive(300.0)
    queue_max_attempts: int = positive(5)
    # the reconciler (pipeline.reconcile, run by the health watcher; 0: off) and the alert on
    # incoming batches left unconverted
    reconcile_interval_seconds: float = non_negative(300.0)
    reconcile_margin_seconds: float = non_negative(300.0)
    stale_incoming_minutes: float = positive(60.0)
    # extra namespace/docType pairs convert publishes (see pipeline/allow_list.py)
    allowed_doc_types: str = ""
    # scheduler / dashboard / mail; runner: where runs execute (the scheduler's default for
    # `python -m scheduler add`, and every job the dashboard makes)
    runner: str = "local"
    smtp_url: str | None = None
    mail_from: str = "telemetry-pipeline@localhost"
    alert_recipients: str = ""  # comma-separated addresses for pipeline health alerts
    health_interval_seconds: float = 3600.0
    public_base_url: str = "http://127.0.0.1:5000"
    # operations: metrics (see pipeline.metrics)
    # convert, scheduler, health watcher: 0 = no metrics server
    metrics_port: int = non_negative(0)
    metrics_host: str = "127.0.0.1"
    # convert: incoming objects older than this are "stale"
    metrics_stale_minutes: float = positive(60.0)
    # every service: pipeline.logs
    log_format: str = "text"  # or json: one JSON object per line
    log_level: str = ""  # unset: each service's default (INFO; WARNING for CLI subcommands)
    # the demo data (python -m launcher demo, docs/screenshots): the shared fixtures directory;
    # unset: the shared fixtures directory beside the checkout (see launcher.demo)
    shared_fixtures: str = ""
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
            elif isinstance(value, str):
                value = hide_url_passwords(value)
            lines.append(f"  {ENV_PREFIX}{field.name.upper()}={value}")
        return "\n".join(lines)


def describe_section(
    section: object,
    prefix: str,
    secrets: Iterable[str] = (),
    when_unset: Mapping[str, str] | None = None,
) -> str:
    """`NAME=value` lines of a section (scheduler, dashboard) for `--help` texts: `secrets`
    shown as *** when set, passwords in URLs hidden; `when_unset` says what an empty field
    means when that is not simply nothing (the dashboard's generated session key)."""
    lines = []
    for field in dataclasses.fields(section):  # type: ignore[arg-type]
        value = getattr(section, field.name)
        if field.name in secrets and value:
            value = "***"
        elif not value and field.name in (when_unset or {}):
            value = (when_unset or {})[field.name]
        elif isinstance(value, str):
            value = hide_url_passwords(value)
        lines.append(f"  {prefix}{field.name.upper()}={value}")
    return "\n".join(lines)


COMMON_SETTINGS = ("data_dir", "log_format", "log_level")
"""Settings every service reads (the others are listed by each service's `--help`)."""


def secret_key_path(data_dir: str) -> Path:
    """The file holding the generated dashboard key when TELEMETRY_DASHBOARD_SECRET_KEY is unset."""
    return Path(data_dir) / SECRET_KEY_FILE


_SECRET_FIELDS = {
    "client_address_hash_key",
    "job_aws_secret_access_key",
    "job_aws_session_token",
}
_URL_PASSWORD = re.compile(r"(://[^/:@]*:)[^/@]*@")


def hide_url_passwords(text: str) -> str:
    """`text` with the password of every URL in it (`postgresql://user:pw@host`) as `***`,
    for `describe()` and any log line or message that shows a setting's URL."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def _coerce(setting: str, raw: object, kind: type, where: str = "") -> object:
    """Convert one raw value; a value of the wrong kind is a ConfigError naming the setting."""
    if raw is None:
        return None
    problem = f"expected {_KIND_NAMES[kind]}, got {raw!r}{where}"
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[raw.strip().lower()]
        raise ConfigError(setting, problem)
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


_KIND_NAMES = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    bool: "true or false (also 1/0, yes/no, on/off)",
}
_BOOLEAN_WORDS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}


def _field_kinds(section: type) -> dict[str, type]:
    """Each field's kind (int, float, bool or str; `X | None` counts as X) from its annotation."""
    kinds: dict[str, type] = {}
    for field in dataclasses.fields(section):
        annotation = str(field.type).replace(" | None", "")
        kinds[field.name] = {"int": int, "float": float, "bool": bool}.get(annotation, str)
    return kinds


def _read_toml(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError("TELEMETRY_CONFIG", f"file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("TELEMETRY_CONFIG", f"{path} is not valid TOML: {exc}") from exc


def _toml_table(env: Mapping[str, str], table: str | None) -> tuple[dict[str, object], str]:
    """The keys of one table of the TELEMETRY_CONFIG file (None: its top level, without the
    sections' tables) and where they come from, for messages; ({}, "") without a file."""
    config_file = env.get(f"{ENV_PREFIX}CONFIG")
    if not config_file:
        return {}, ""
    document = _read_toml(config_file)
    if table is None:
        for key, value in document.items():
            if isinstance(value, dict) and key not in SECTIONS:
                raise ConfigError(
                    "TELEMETRY_CONFIG",
                    f"unknown section [{key}] in {config_file} (sections: {', '.join(SECTIONS)})",
                )
        shared = {
            key: value
            for key, value in document.items()
            if key not in SECTIONS and _shared_name(key) not in MOVED_SETTINGS
        }
        return shared, config_file
    values = document.get(table, {})
    if not isinstance(values, dict):
        raise ConfigError("TELEMETRY_CONFIG", f"{table} in {config_file} must be a [{table}] table")
    return values, f"[{table}] of {config_file}"


def _shared_name(key: str) -> str:
    """A top-level TOML key as a shared setting's field name (`TELEMETRY_QUEUE_URL` or
    `queue_url` -> `queue_url`)."""
    return key.lower().removeprefix(ENV_PREFIX.lower())


def _moved_here(table: str | None) -> dict[str, str]:
    """The fields of section `table` that were shared settings: field -> old shared name."""
    return {field: old for old, (where, field) in MOVED_SETTINGS.items() if where == table}


def _moved_toml_values(
    env: Mapping[str, str], table: str, prefix: str, kinds: Mapping[str, type]
) -> dict[str, object]:
    """The section's fields still set by their old top-level key in the TELEMETRY_CONFIG file,
    each with a FutureWarning naming where it belongs now."""
    moved = {old: field for field, old in _moved_here(table).items()}
    config_file = env.get(f"{ENV_PREFIX}CONFIG")
    if not moved or not config_file:
        return {}
    values: dict[str, object] = {}
    for key, raw in _read_toml(config_file).items():
        field = moved.get(_shared_name(key))
        if field is None:
            continue
        variable = f"{prefix}{field.upper()}"
        warnings.warn(
            f"{key} at the top level of {config_file} is deprecated: set {field} in its "
            f"[{table}] table ({variable}) instead",
            FutureWarning,
            stacklevel=3,
        )
        values[field] = _coerce(variable, raw, kinds[field], f" in {config_file}")
    return values


def _old_variables(name: str, legacy_prefix: str, moved: Mapping[str, str]) -> list[str]:
    """The deprecated variables that still set field `name`, in the order they are tried."""
    old = [f"{legacy_prefix}{name.upper()}"] if legacy_prefix else []
    if name in moved:
        old.append(f"{ENV_PREFIX}{moved[name].upper()}")
    return old


def load_section(
    section: type[S],
    prefix: str,
    table: str | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    legacy_prefix: str = "",
) -> S:
    """Build one settings section: defaults < TOML table < `<prefix><NAME>` variables <
    `overrides` (CLI flags; None means "not given"), each value coerced to its field's kind and
    range-checked (`positive`, `non_negative`, `one_of`). Every problem is a ConfigError naming
    the variable, so a service stops at start-up with one line a person can act on.

    `legacy_prefix`: variables under an old prefix still accepted, with a warning saying the
    new name; likewise the old shared variables and top-level TOML keys of the fields that
    moved into this section (`MOVED_SETTINGS`). This is the one place that keeps a rename
    backward compatible; the new name always wins.
    """
    env = os.environ if env is None else env
    kinds = _field_kinds(section)
    moved = _moved_here(table)
    values: dict[str, object] = _moved_toml_values(env, table, prefix, kinds) if table else {}
    toml_values, where = _toml_table(env, table)
    for key, raw in toml_values.items():
        name = key.lower().removeprefix(prefix.lower())
        if name not in kinds:
            raise ConfigError("TELEMETRY_CONFIG", f"unknown setting {key!r} in {where}")
        values[name] = _coerce(f"{prefix}{name.upper()}", raw, kinds[name], f" in {where}")
    for name, kind in kinds.items():
        variable = f"{prefix}{name.upper()}"
        raw = env.get(variable)
        for old in _old_variables(name, legacy_prefix, moved):
            if raw is not None and raw != "":
                break
            raw = env.get(old)
            if raw is not None and raw != "":
                warnings.warn(
                    f"{old} is deprecated: set {variable} instead", FutureWarning, stacklevel=2
                )
        if raw is not None and raw != "":
            values[name] = _coerce(variable, raw, kind)
    if legacy_prefix:
        _warn_of_unread_legacy_variables(env, legacy_prefix, kinds)
    for name, raw in (overrides or {}).items():
        if name not in kinds:
            raise ConfigError(f"{prefix}{name.upper()}", "is not a known setting")
        if raw is not None:
            values[name] = _coerce(f"{prefix}{name.upper()}", raw, kinds[name])
    loaded = section(**values)
    check_ranges(loaded, prefix)
    return loaded


def _warn_of_unread_legacy_variables(
    env: Mapping[str, str], legacy_prefix: str, kinds: Mapping[str, type]
) -> None:
    """An old-prefix variable that names no field used to reach the app anyway (Flask config
    from DASHBOARD_*); say that it is ignored now rather than drop it silently."""
    for variable in sorted(env):
        name = variable.removeprefix(legacy_prefix).lower()
        if variable.startswith(legacy_prefix) and name not in kinds:
            warnings.warn(
                f"{variable} is not a setting and is ignored", FutureWarning, stacklevel=3
            )


def check_ranges(loaded: object, prefix: str) -> None:
    """Refuse a value outside its field's declared range; the error names the variable."""
    for field in dataclasses.fields(loaded):  # type: ignore[arg-type]
        rule = field.metadata.get(_RULE)
        value = getattr(loaded, field.name)
        if rule is None or value is None:
            continue
        variable = f"{prefix}{field.name.upper()}"
        if rule == "positive" and value <= 0:
            raise ConfigError(variable, f"must be positive, got {value}")
        if rule == "non_negative" and value < 0:
            raise ConfigError(variable, f"must not be negative, got {value}")
        if isinstance(rule, tuple) and value not in rule:
            raise ConfigError(variable, f"must be one of {', '.join(rule)}, got {value!r}")


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the effective settings; `overrides` (from CLI flags) win over everything."""
    return _with_derived_defaults(load_section(Settings, ENV_PREFIX, None, env, overrides))


def read_setting(name: str, env: Mapping[str, str] | None = None) -> object:
    """One shared setting's value (default < TOML < environment), typed, without building
    them all: for library code called without a Settings at hand (`open_store(url)` alone
    still finds TELEMETRY_S3_ENDPOINT_URL), where an unrelated bad setting must not fail it."""
    env = os.environ if env is None else env
    kind = _field_kinds(Settings)[name]
    variable = f"{ENV_PREFIX}{name.upper()}"
    raw = env.get(variable)
    if raw is not None and raw != "":
        return _coerce(variable, raw, kind)
    toml_values, where = _toml_table(env, None)
    for key, value in toml_values.items():
        if key.lower().removeprefix(ENV_PREFIX.lower()) == name:
            return _coerce(variable, value, kind, f" in {where}")
    return Settings.__dataclass_fields__[name].default


def use_config_file(path: str) -> None:
    """Make `path` the TOML file every later `load_settings`/`load_section` reads (a
    `--config` flag), for this process and the services it starts, which inherit it."""
    _read_toml(path)  # a missing or broken file is refused now, naming the flag's setting
    os.environ[f"{ENV_PREFIX}CONFIG"] = path


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
    if settings.client_address_policy == "hash" and not settings.client_address_hash_key:
        raise ConfigError(
            "TELEMETRY_CLIENT_ADDRESS_HASH_KEY",
            "must be set (a long random string) when TELEMETRY_CLIENT_ADDRESS_POLICY is hash",
        )
    return dataclasses.replace(settings, data_dir=str(data), **missing)
