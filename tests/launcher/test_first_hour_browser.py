"""The README's first hour in a real browser (Debian chromium driven by Playwright).

`python -m launcher` (what `make run` starts) on a new data directory, the first user
created exactly as the README says, then: sign in, see the demo job (it belongs to
demo@localhost; the first user is an admin), its finished run with the banner and buttons of
a finished run, its published output, the demo submissions on /health, and no page wider than
a phone. Screenshots at desktop and phone widths go to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.servers import free_port, service, wait_for_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
EMAIL, PASSWORD = "you@example.com", "first hour password"
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


def readme_create_user_command() -> list[str]:
    """The README's line, with --password instead of the prompt (there is no terminal here)."""
    match = re.search(r"\.venv/bin/python -m dashboard (create-user \S+)", README)
    assert match, "the README no longer says how to create the first user"
    command, email = match.group(1).split()
    assert email == EMAIL
    return [sys.executable, "-m", "dashboard", command, email, "--password", PASSWORD]


@pytest.fixture
def first_hour(tmp_path, shared_fixtures):
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make setup installs it)")
    data_dir = tmp_path / "var"  # new: runall adds the demo data
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(
        TELEMETRY_DATA_DIR=str(data_dir),
        TELEMETRY_SHARED_FIXTURES=str(shared_fixtures),
        TELEMETRY_SPOOL_MAX_AGE_SECONDS="1",
    )
    ingest_port, dashboard_port = free_port(), free_port()
    log_path = tmp_path / "runall.log"
    argv = ["-m", "launcher", "--ingest-port", str(ingest_port)]
    with service(argv + ["--dashboard-port", str(dashboard_port)], log_path, env):
        try:
            wait_for_port(dashboard_port, 90)
            created = subprocess.run(
                readme_create_user_command(), env=env, capture_output=True, text=True, cwd=ROOT
            )
            assert created.returncode == 0, created.stderr
            assert "created admin user you@example.com" in created.stdout
            yield f"http://127.0.0.1:{dashboard_port}", tmp_path
        finally:
            print("--- runall.log\n" + log_path.read_text(errors="replace")[-6000:])


def shoot(page, tmp_path: Path, name: str) -> None:
    """Screenshot `page` at each width, and check nothing is wider than the phone's screen."""
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(tmp_path / f"{name}-{size}.png"), full_page=True)
        if size == "phone":
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, f"{name} is {overflow}px wide on a {width}px screen"
    page.set_viewport_size({"width": SIZES["desktop"][0], "height": SIZES["desktop"][1]})


def test_the_readme_first_hour(first_hour):
    from playwright.sync_api import expect, sync_playwright

    base, tmp_path = first_hour
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        missing = []
        page.on("response", lambda r: r.status == 404 and missing.append(r.url))
        try:
            page.goto(f"{base}/")
            page.fill("input[name=email]", EMAIL)
            page.fill("input[name=password]", PASSWORD)
            page.click("button:has-text('Sign in')")
            expect(page.locator("h1")).to_have_text("All jobs")

            # The demo job is scheduled once the demo submissions are published, then run once.
            for _ in range(60):
                if page.locator("a:has-text('published-summary')").count():
                    break
                page.wait_for_timeout(1000)
                page.reload()
            expect(page.locator("a:has-text('published-summary')")).to_be_visible()
            page.click("a:has-text('published-summary')")
            expect(page.locator("h1")).to_have_text("Job published-summary")
            page.click("td a:has-text('#')")
            expect(page.locator("#run-state")).to_have_text("succeeded", timeout=120_000)
            expect(page.locator("#run-banner")).to_contain_text("succeeded")
            assert page.locator("button:has-text('Cancel run'):visible").count() == 0
            expect(page.locator("body")).not_to_contain_text("is queued")
            shoot(page, tmp_path, "run")

            page.click("#run-files a:has-text('summary.json')")
            summary = json.loads(page.locator("body").inner_text())
            assert summary["objects"] >= 1

            page.goto(f"{base}/jobs/published-summary")
            expect(page.locator(".meta a:has-text('published files')")).to_be_visible()
            shoot(page, tmp_path, "job")
            page.goto(f"{base}/public/")
            expect(page.locator("a:has-text('published-summary/data/')")).to_be_visible()
            page.click("a:has-text('published-summary/data/')")
            expect(page.locator("table.listing")).to_contain_text("summary.json")
            shoot(page, tmp_path, "public")

            # /health counts the current hour: the demo submissions are there, on a drawn line.
            page.goto(f"{base}/health")
            for _ in range(60):
                if page.locator("svg path.channel").count():
                    break
                page.wait_for_timeout(1000)
                page.reload()
            expect(page.locator("svg path.channel").first).to_be_attached()
            expect(page.locator(".graphs")).not_to_contain_text("No submissions recorded")
            expect(page.locator("#backlog-parked")).to_be_visible()
            shoot(page, tmp_path, "health")

            page.goto(f"{base}/jobs")
            shoot(page, tmp_path, "jobs")
            page.goto(f"{base}/jobs/no-such-job")
            expect(page.locator("h1")).to_contain_text("Not Found")
            expect(page.locator("nav")).to_contain_text("Jobs")  # styled, with the menu
            shoot(page, tmp_path, "not-found")
            assert [u for u in missing if not u.endswith("/jobs/no-such-job")] == []
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
    print(f"screenshots in {tmp_path}")
