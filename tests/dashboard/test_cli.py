"""`python -m dashboard`: create-user (with and without --password), create-token, --help,
and the first-run message when the server starts with no users."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dashboard import __main__ as cli
from dashboard import create_app, database
from dashboard.users import authenticate, find_user
from tests.support.servers import free_port


def test_create_user_with_password_and_admin(settings, capsys):
    assert (
        cli.main(["create-user", "Ada@Example.org", "--password", "long enough pw", "--admin"]) == 0
    )
    assert "created admin user ada@example.org" in capsys.readouterr().out
    app = create_app(settings)
    with app.app_context():
        user = authenticate(database.db(), "ada@example.org", "long enough pw")
        assert user is not None and user.is_admin


def test_create_user_prompts_for_the_password(settings, monkeypatch, capsys):
    answers = iter(["prompted password", "prompted password"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(answers))
    assert cli.main(["create-user", "bob@example.org"]) == 0
    with create_app(settings).app_context():
        assert authenticate(database.db(), "bob@example.org", "prompted password") is not None


def test_create_user_refuses_mismatched_prompts_short_passwords_and_duplicates(
    settings, monkeypatch, capsys
):
    answers = iter(["first password", "other password"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(answers))
    assert cli.main(["create-user", "bob@example.org"]) == 1
    assert cli.main(["create-user", "bob@example.org", "--password", "short"]) == 1
    assert "at least 8" in capsys.readouterr().err
    with create_app(settings).app_context():
        assert find_user(database.db(), "bob@example.org") is None
    assert cli.main(["create-user", "bob@example.org", "--password", "long enough pw"]) == 0
    assert cli.main(["create-user", "bob@example.org", "--password", "long enough pw"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_create_token_prints_a_working_token(settings, capsys):
    assert cli.main(["create-token", "nobody@example.org"]) == 1
    cli.main(["create-user", "ada@example.org", "--password", "long enough pw"])
    capsys.readouterr()
    assert cli.main(["create-token", "ada@example.org", "--label", "ci"]) == 0
    secret = capsys.readouterr().out.strip()
    client = create_app(settings).test_client()
    assert client.get("/api/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_help_explains_flags_and_shows_effective_settings(settings):
    out = subprocess.run(
        [sys.executable, "-m", "dashboard", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    ).stdout
    assert "--port" in out and "create-user" in out
    assert f"TELEMETRY_DATA_DIR={settings.data_dir}" in out


def test_first_start_without_users_says_how_to_create_one(settings):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--port", str(port), "--no-expiry"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "listening on" in line:
                break
        output = "".join(lines)
        assert "python -m dashboard create-user" in output, output
        assert "first run" in output
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("argv", [["--port", "notanumber"], ["create-user"]])
def test_bad_arguments_exit_with_usage(argv, settings):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_the_first_user_is_an_admin_and_later_ones_are_not(settings, capsys):
    """README: `create-user you@example.com` (no --admin) must show the demo job, which belongs
    to demo@localhost: the first account administers the installation."""
    assert cli.main(["create-user", "you@example.com", "--password", "long enough pw"]) == 0
    assert "created admin user you@example.com" in capsys.readouterr().out
    assert cli.main(["create-user", "second@example.com", "--password", "long enough pw"]) == 0
    assert "created user second@example.com" in capsys.readouterr().out
    with create_app(settings).app_context():
        assert find_user(database.db(), "you@example.com").is_admin
        assert not find_user(database.db(), "second@example.com").is_admin
