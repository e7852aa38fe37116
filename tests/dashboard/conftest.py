"""The dashboard under test, built the way Flask's tutorial builds it: one `app` from the test's
settings and one `client`, defined here only.

A module states what differs through the small fixtures `app` and `client` read, overriding
them: `app_settings` (the settings the app is made from), `app_config` (Flask config
overrides), `app_users` (accounts made first, email -> admin) and `signed_in_as` (the account
`client` is signed in as). Sign-in and the other auth actions are in tests/support/dashboard.py.
"""

from __future__ import annotations

import pytest

from dashboard import create_app
from tests.support.dashboard import add_user, sign_in


@pytest.fixture(autouse=True)
def stop_local_workers():
    """Local workers are real sandboxes with an sshd: none outlives its test."""
    yield
    from dashboard.workers.local import stop_all

    stop_all()


@pytest.fixture
def app_settings(settings):
    return settings


@pytest.fixture
def app_config() -> dict:
    return {}


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {}


@pytest.fixture
def signed_in_as() -> str | None:
    return None


@pytest.fixture
def app(app_settings, app_config, app_users):
    app = create_app(app_settings, app_config or None)
    for email, admin in app_users.items():
        add_user(app, email, admin=admin)
    return app


@pytest.fixture
def client(app, signed_in_as):
    client = app.test_client()
    if signed_in_as:
        sign_in(client, signed_in_as)
    return client
