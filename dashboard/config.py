"""The dashboard's section of the settings: `TELEMETRY_DASHBOARD_*` variables and the
`[dashboard]` table of the TELEMETRY_CONFIG file, loaded by `pipeline.config.load_section`
(the same coercion, range checks and one-line errors as every other setting).

Each field is one Flask config key of the same name in upper case (`worker_provider` is
`app.config["WORKER_PROVIDER"]`), so the code reading `app.config` and the tests passing a
config dict to `create_app` stay as they are; `secret_key` is Flask's own SECRET_KEY. The old
`DASHBOARD_<KEY>` variables, and the shared `TELEMETRY_<NAME>` settings that moved here because
only the dashboard reads them (pipeline.config.MOVED_SETTINGS: TELEMETRY_SECRET_KEY,
TELEMETRY_DASHBOARD_WORKERS, ...), are still read by the machinery, with a warning naming the
new variable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pipeline.config import (
    describe_section,
    load_section,
    non_negative,
    one_of,
    positive,
    secret_key_path,
)

ENV_PREFIX = "TELEMETRY_DASHBOARD_"
LEGACY_ENV_PREFIX = "DASHBOARD_"
TOML_TABLE = "dashboard"


@dataclasses.dataclass(frozen=True)
class DashboardConfig:
    # Signs sessions and mailed account links. Unset: the dashboard generates a random key once
    # and keeps it in <data_dir>/dashboard-secret-key (mode 0600); see dashboard.secret_key.
    secret_key: str = ""
    # Email domains that may sign up by mailed link (comma separated); empty: no sign-up.
    signup_domains: str = ""
    # /metrics: who may scrape it (networks, comma separated) or a bearer token.
    metrics_allow: str = "127.0.0.1/32,::1/128"
    metrics_token: str = ""
    # Serving under gunicorn (dashboard.server): worker processes and threads per process
    # (not the analysis workers below).
    server_workers: int = positive(2)
    server_threads: int = positive(4)
    # Reverse proxies in front whose X-Forwarded-* headers are trusted (ProxyFix). The same
    # count as ingest's TELEMETRY_TRUSTED_PROXY_HOPS, but kept apart on purpose: one
    # environment file serves every unit, and ingest often faces clients directly while the
    # dashboard sits behind nginx; one shared count would let any client choose its country.
    trusted_proxies: int = non_negative(0)
    # The session cookie's Secure flag; "auto": Secure unless the request is plain http to a
    # loopback host (dashboard.web_security).
    session_cookie_secure: str = one_of("auto", "true", "false")
    # Largest code tarball a form or the API accepts; unset: TELEMETRY_SCHEDULER_TARBALL_MAX_BYTES.
    tarball_max_bytes: int | None = positive(None)
    # Interactive workers (dashboard.workers): "local" or "ec2" (then worker_ec2_ami and
    # worker_ec2_instance_profile are required; create_app refuses without them).
    worker_provider: str = "local"
    worker_lifetime_hours: int = positive(24)
    worker_extend_hours: int = positive(24)
    worker_warn_before_minutes: int = non_negative(60)
    # The address local workers' sshd listen on and their SSH command names.
    worker_local_ssh_host: str = "127.0.0.1"
    worker_ec2_ami: str = ""
    # The instance profile (name or ARN) giving workers read-only access to the published store.
    worker_ec2_instance_profile: str = ""
    worker_ec2_instance_type: str = "t3.large"
    worker_ec2_ssh_user: str = "ubuntu"
    # How often the expiry sweep stops workers past their kill time.
    expiry_interval_seconds: float = positive(60.0)
    # Accounts: how long a mailed sign-up or reset link is valid (dashboard.account).
    account_link_max_age_hours: int = positive(24)
    # Single sign-on (dashboard.sso); password_signin false: single sign-on only.
    password_signin: bool = True
    oidc_discovery_url: str = ""  # https://idp.example.org/.well-known/openid-configuration
    oidc_issuer: str = ""  # or only the issuer; the discovery URL is derived from it
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scope: str = "openid email profile"
    oidc_allowed_domains: str | None = None  # comma separated; unset: signup_domains
    oidc_allowed_groups: str = ""
    oidc_groups_claim: str = "groups"
    oidc_require_verified_email: bool = True
    oidc_label: str = "single sign-on"
    # The sign-in throttle (dashboard.throttle): where its counters live and the limits.
    ratelimit_storage_uri: str = "appdb://"
    ratelimit_strategy: str = "fixed-window"
    signin_limit_per_account: str = "10 per 15 minutes"
    signin_limit_per_address: str = "50 per 15 minutes"
    mail_link_limit_per_address: str = "20 per hour"  # sign-up and reset mails per client
    # /telemetry: whose published day files it shows, and how often it checks for new ones.
    aggregates_job: str = "telemetry-aggregates"
    aggregates_sync_seconds: float = positive(10.0)

    def describe(self, data_dir: str) -> str:
        """`TELEMETRY_DASHBOARD_NAME=value` lines for `python -m dashboard --help` (secrets
        hidden; an unset secret_key says which file holds the generated one)."""
        generated = f"(unset: random, kept in {secret_key_path(data_dir)})"
        return describe_section(
            self,
            ENV_PREFIX,
            secrets=("secret_key", "metrics_token", "oidc_client_secret"),
            when_unset={"secret_key": generated},
        )

    def flask_config(self) -> dict[str, Any]:
        """The section as Flask config keys (upper case; the cookie flag as True/False/"auto")."""
        config = {f.name.upper(): getattr(self, f.name) for f in dataclasses.fields(self)}
        secure = config["SESSION_COOKIE_SECURE"]
        config["SESSION_COOKIE_SECURE"] = {"true": True, "false": False}.get(secure, secure)
        return config


def setting_name(key: str) -> str:
    """The variable behind a Flask config key, for error messages (`WORKER_PROVIDER` ->
    `TELEMETRY_DASHBOARD_WORKER_PROVIDER`)."""
    return f"{ENV_PREFIX}{key.upper()}"


def load_dashboard_config(
    env: Mapping[str, str] | None = None, **overrides: object
) -> DashboardConfig:
    """Defaults < `[dashboard]` table < environment (TELEMETRY_DASHBOARD_*, else the deprecated
    DASHBOARD_*) < `overrides`."""
    return load_section(
        DashboardConfig, ENV_PREFIX, TOML_TABLE, env, overrides, legacy_prefix=LEGACY_ENV_PREFIX
    )
