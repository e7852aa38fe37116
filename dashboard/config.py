"""The dashboard's section of the settings: `TELEMETRY_DASHBOARD_*` variables and the
`[dashboard]` table of the TELEMETRY_CONFIG file, loaded by `pipeline.config.load_section`
(the same coercion, range checks and one-line errors as every other setting).

Each field is one Flask config key of the same name in upper case (`worker_provider` is
`app.config["WORKER_PROVIDER"]`), so the code reading `app.config` and the tests passing a
config dict to `create_app` stay as they are. The old `DASHBOARD_<KEY>` variables are still
read, with a warning naming the new variable (here and nowhere else).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pipeline.config import describe_section, load_section, non_negative, one_of, positive

ENV_PREFIX = "TELEMETRY_DASHBOARD_"
LEGACY_ENV_PREFIX = "DASHBOARD_"
TOML_TABLE = "dashboard"


@dataclasses.dataclass(frozen=True)
class DashboardConfig:
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
    oidc_allowed_domains: str | None = None  # comma separated; unset: TELEMETRY_SIGNUP_DOMAINS
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

    def describe(self) -> str:
        """`TELEMETRY_DASHBOARD_NAME=value` lines for `python -m dashboard --help`."""
        return describe_section(self, ENV_PREFIX, secrets=("oidc_client_secret",))

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
