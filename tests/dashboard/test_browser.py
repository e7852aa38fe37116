"""The whole dashboard in a real browser: Debian chromium driven by Playwright, talking to
`python -m dashboard` with `python -m scheduler` executing the run, on one shared data dir.

Sign in, schedule a job with a real tarball, "Run now", watch the run reach `succeeded` on the
run page (its state updates by polling), read the log, and open the published file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.servers import free_port, service, wait_for_port
from tests.support.tarballs import make_tarball

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "ada@example.org", "browser test password"
SCRIPT = """#!/bin/bash
set -e
echo "computing the answer"
mkdir -p output/tables
echo "the answer is 42" > output/result.txt
echo "wrote output/result.txt"
"""


@pytest.fixture
def stack(data_dir, tmp_path):
    if not shutil.which(CHROMIUM.rsplit("/", 1)[1]) and not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make setup installs it)")
    env = os.environ.copy()
    subprocess.run(
        [sys.executable, "-m", "dashboard", "create-user", EMAIL, "--password", PASSWORD],
        check=True,
        env=env,
        capture_output=True,
    )
    port = free_port()
    with (
        service(["-m", "dashboard", "--port", str(port)], tmp_path / "dashboard.log", env),
        service(["-m", "scheduler"], tmp_path / "scheduler.log", env),
    ):
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"


def test_schedule_run_now_and_read_the_published_result(stack, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    tarball = tmp_path / "analysis.tar.gz"
    tarball.write_bytes(make_tarball({"analysis/run.sh": SCRIPT}))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{stack}/jobs")
            expect(page).to_have_url(f"{stack}/login?next=/jobs")
            page.fill("input[name=email]", EMAIL)
            page.fill("input[name=password]", PASSWORD)
            page.click("button:has-text('Sign in')")
            expect(page.locator("h1")).to_have_text("All jobs")  # the first user is an admin

            page.click("a.button:has-text('Schedule a Job')")
            expect(page.locator("h1")).to_have_text("Schedule a Job")
            # A bad name: one error, in the live check's words; the chosen file is asked for again.
            page.fill("#name", "browser job")
            page.set_input_files("#tarball", str(tarball))
            page.fill("#command", "bash analysis/run.sh")
            page.click("button:has-text('Schedule job')")
            expect(page.locator("#field-name .error")).to_have_count(1)
            expect(page.locator("#field-name .error")).to_contain_text("at most 100 characters")
            expect(page.locator("#name-check")).to_have_text("")
            expect(page.locator("#field-tarball .error")).to_contain_text(
                "Choose analysis.tar.gz again"
            )
            page.fill("#name", "browser-job")
            expect(page.locator("#name-check")).to_contain_text("is available")
            expect(page.locator("#field-name .error")).to_be_hidden()
            page.set_input_files("#tarball", str(tarball))
            page.fill("#command", "bash analysis/run.sh")
            page.fill("#output_dir", "output")
            page.select_option("#frequency", "weekly")
            expect(page.locator("#field-day_of_week")).to_be_visible()
            page.select_option("#day_of_week", "2")
            page.select_option("#hour", "6")
            page.fill("#timeout_minutes", "5")
            page.click("button:has-text('Schedule job')")

            expect(page).to_have_url(f"{stack}/jobs/browser-job")
            expect(page.locator(".meta")).to_contain_text("weekly on Wednesday at 06:00 UTC")
            page.click("button:has-text('Run now')")
            expect(page.locator("h1")).to_contain_text("Run #")
            expect(page.locator("#run-state")).to_have_text("succeeded", timeout=120_000)
            expect(page.locator("#run-exit")).to_have_text("0")
            # Banner and buttons follow the state: no "queued" and no "Cancel run" when done.
            expect(page.locator("#run-banner")).to_contain_text("succeeded")
            expect(page.locator("#run-cancel")).to_be_hidden()
            expect(page.locator("#run-duration")).to_have_text(re.compile(r"^\d+s$"))
            expect(page.locator("#run-finished")).to_have_text(re.compile(r" UTC$"))
            expect(page.locator("#run-log")).to_contain_text("wrote output/result.txt")

            page.click("#run-files a:has-text('result.txt')")
            expect(page).to_have_url(f"{stack}/public/browser-job/data/result.txt")
            assert "the answer is 42" in page.content()

            page.goto(f"{stack}/jobs")
            expect(page.locator("td >> text=succeeded")).to_be_visible()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            for name in ("dashboard.log", "scheduler.log"):
                print(f"--- {name}\n" + (tmp_path / name).read_text(errors="replace")[-4000:])
            print(f"screenshot: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()


ADMIN = "root@example.org"
NEWCOMER = "New.Person@Example.org"
NEW_PASSWORD = "newcomer password 1"


@pytest.fixture
def accounts_stack(data_dir, tmp_path, smtp_server, oidc_provider):
    """The dashboard alone, with sign-up open to example.org, mail to the test's SMTP server
    and single sign-on through the test's OIDC provider."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make setup installs it)")
    port = free_port()
    env = os.environ.copy()
    env.update(
        TELEMETRY_DASHBOARD_SIGNUP_DOMAINS="example.org",
        TELEMETRY_SMTP_URL=smtp_server.url,
        TELEMETRY_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        TELEMETRY_DASHBOARD_OIDC_ISSUER=oidc_provider,
        TELEMETRY_DASHBOARD_OIDC_CLIENT_ID="telemetry-dashboard",
        TELEMETRY_DASHBOARD_OIDC_CLIENT_SECRET="client secret",
        TELEMETRY_DASHBOARD_SIGNIN_LIMIT_PER_ACCOUNT="3 per 15 minutes",
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dashboard",
            "create-user",
            ADMIN,
            "--password",
            PASSWORD,
            "--admin",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    with service(
        ["-m", "dashboard", "--port", str(port), "--no-expiry"], tmp_path / "dashboard.log", env
    ):
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"


def end_throttle_windows() -> None:
    """Stage the end of every sign-in throttle window in the shared counter table (the
    dashboard keeps them in the app database), instead of waiting 15 minutes."""
    from sqlalchemy import text

    from pipeline.config import load_settings
    from pipeline.db import make_engine

    engine = make_engine(load_settings().database_url)
    with engine.begin() as conn:
        assert conn.execute(text("UPDATE dashboard_rate_limits SET expires_at = 0")).rowcount
    engine.dispose()


def sign_in_as(page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")


def test_sign_up_confirm_by_mail_sessions_headers_and_sso(accounts_stack, smtp_server, tmp_path):
    """Sign up; the mail reaches the SMTP server; before the link nothing signs in, after it
    the account works; a cookie copied before sign-out is refused after it; every dashboard
    response carries the security headers and the browser reports no CSP violation; the admin
    page's confirmation (static JS) works; OIDC refuses a foreign domain and admits ada;
    wrong passwords lock an account, with "try again in 15 minutes", until the window ends."""
    from playwright.sync_api import expect, sync_playwright

    base = accounts_stack
    responses, violations = [], []

    def watch(page) -> None:
        page.on("response", lambda r: responses.append(r) if r.url.startswith(base) else None)
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(30_000)
        watch(page)
        try:
            page.goto(f"{base}/login")
            page.click("a:has-text('Sign up')")
            page.fill("input[name=email]", NEWCOMER)
            page.click("button:has-text('Mail me the link')")
            expect(page.locator("#link-sent")).to_contain_text("new.person@example.org")

            sign_in_as(page, base, NEWCOMER, NEW_PASSWORD)  # not confirmed: nothing to sign in to
            expect(page.locator(".error")).to_contain_text("Wrong email or password.")

            (message,) = smtp_server.wait_for(1)
            assert message["X-Envelope-To"] == "new.person@example.org"
            body = message.get_payload(decode=True).decode()
            link = next(word for word in body.split() if "/account/link/" in word)
            assert link.startswith(base)
            page.goto(link)
            expect(page.locator("h1")).to_have_text("Confirm your account")
            page.fill("#password", NEW_PASSWORD)
            page.fill("#confirm", NEW_PASSWORD)
            page.click("button:has-text('Create account')")
            expect(page.locator("h1")).to_have_text("My jobs")

            copied = context.cookies()
            page.click("button:has-text('Sign out')")
            expect(page.locator(".flash")).to_contain_text("You are signed out.")
            thief = browser.new_context()
            thief.add_cookies(copied)
            stolen = thief.new_page()
            stolen.goto(f"{base}/jobs")
            expect(stolen).to_have_url(f"{base}/login?next=/jobs")
            thief.close()

            sign_in_as(page, base, NEWCOMER, NEW_PASSWORD)
            expect(page.locator("h1")).to_have_text("My jobs")
            page.click("button:has-text('Sign out')")

            sign_in_as(page, base, ADMIN, PASSWORD)
            page.click("nav a:has-text('Sign-ins')")
            expect(page.locator("#sign-in-events")).to_contain_text("new.person@example.org")
            expect(page.locator("#sign-in-events")).to_contain_text("refused")
            row = page.locator("tr", has_text="new.person@example.org").first
            page.once("dialog", lambda dialog: dialog.dismiss())  # the confirm() from confirm.js
            row.locator("button:has-text('Sign out everywhere')").click()
            expect(page.locator("h1")).to_have_text("Accounts and sign-ins")
            assert not page.locator(".flash").count()  # dismissed: nothing happened
            page.once("dialog", lambda dialog: dialog.accept())
            row.locator("button:has-text('Sign out everywhere')").click()
            expect(page.locator(".flash")).to_contain_text(
                "Every session of new.person@example.org"
            )
            page.click("button:has-text('Sign out')")

            page.click("#sso-sign-in")
            page.click("button[name=sub][value=eve]")
            expect(page.locator("#sso-refused")).to_contain_text("not at an allowed domain")
            page.goto(f"{base}/login")
            page.click("#sso-sign-in")
            page.click("button[name=sub][value=ada]")
            expect(page.locator("h1")).to_have_text("My jobs")
            expect(page.locator(".who")).to_contain_text("ada@example.org")
            page.click("button:has-text('Sign out')")

            for _ in range(3):
                sign_in_as(page, base, ADMIN, "not the password")
                expect(page.locator(".error")).to_contain_text("Wrong email or password.")
            sign_in_as(page, base, ADMIN, PASSWORD)  # right, but the account is locked
            expect(page.locator("#throttled")).to_contain_text("try again in 15 minutes")
            end_throttle_windows()  # 15 minutes pass, as far as the counters can tell
            sign_in_as(page, base, ADMIN, PASSWORD)
            expect(page.locator(".who")).to_contain_text(ADMIN)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(
                "--- dashboard.log\n"
                + (tmp_path / "dashboard.log").read_text(errors="replace")[-4000:]
            )
            raise
        finally:
            browser.close()

    assert responses
    for response in responses:
        headers = response.headers
        assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), response.url
        assert headers.get("x-content-type-options") == "nosniff", response.url
        assert headers.get("referrer-policy") == "same-origin", response.url
    assert violations == []
