"""The whole dashboard in a real browser: Debian chromium driven by Playwright, talking to
`python -m dashboard` with `python -m scheduler` executing the run, on one shared data dir.

Sign in, schedule a job with a real tarball, "Run now", watch the run reach `succeeded` on the
run page (its state updates by polling), read the log, and open the published file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL, PASSWORD = "ada@example.org", "browser test password"
SCRIPT = """#!/bin/bash
set -e
echo "computing the answer"
mkdir -p output/tables
echo "the answer is 42" > output/result.txt
echo "wrote output/result.txt"
"""


def build_tarball(path: Path) -> Path:
    data = SCRIPT.encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("analysis/run.sh")
        info.size, info.mode = len(data), 0o755
        archive.addfile(info, io.BytesIO(data))
    return path


@contextlib.contextmanager
def service(args: list[str], log_path: Path, env: dict):
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


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

    tarball = build_tarball(tmp_path / "analysis.tar.gz")
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
