"""`python -m dashboard` under gunicorn: a signed-in request through it, every worker's
requests in one /metrics, the worker-expiry sweep in exactly one process (the master), and
the reverse-proxy setting (ProxyFix) for /metrics' address check."""

from __future__ import annotations

import http.cookiejar
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request

from dashboard import create_app
from tests.support.dashboard import CSRF_RE
from tests.support.metrics import parse, value
from tests.support.servers import free_port, wait_for_port

EMAIL, PASSWORD = "gus@example.org", "gunicorn test password"


def test_signed_in_requests_through_gunicorn_workers_and_one_expiry_sweeper(data_dir, tmp_path):
    subprocess.run(
        [sys.executable, "-m", "dashboard", "create-user", EMAIL, "--password", PASSWORD],
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = open(tmp_path / "dashboard.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--port", str(port), "--workers", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    try:
        wait_for_port(port, timeout=60)
        html = opener.open(base + "/login").read().decode()
        match = CSRF_RE.search(html)
        form = {
            "email": EMAIL,
            "password": PASSWORD,
            "csrf_token": match.group(1) or match.group(2),
        }
        signed_in = opener.open(base + "/login", data=urllib.parse.urlencode(form).encode())
        assert signed_in.url == base + "/jobs"
        for _ in range(5):
            page = opener.open(base + "/jobs")
            # the first account is an admin (create-user), whose list is every job
            assert page.status == 200 and "All jobs" in page.read().decode()

        samples = parse(opener.open(base + "/metrics").read().decode())
        # six views of /jobs (one after sign-in), whichever worker answered each
        jobs = value(
            samples,
            "dashboard_requests_total",
            endpoint="jobs.list_jobs",
            method="GET",
            status="200",
        )
        assert jobs == 6
        assert (
            value(
                samples,
                "dashboard_requests_total",
                endpoint="auth.login",
                method="POST",
                status="302",
            )
            == 1
        )
        sweepers = {
            dict(labels)["pid"]: v
            for (name, labels), v in samples.items()
            if name == "dashboard_expiry_sweeper_running" and v
        }
        assert sweepers == {str(server.pid): 1.0}  # the master only, not each worker
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    assert server.returncode == 0, (tmp_path / "dashboard.log").read_text()


def test_behind_a_trusted_proxy_an_outside_client_cannot_scrape_metrics(settings):
    """A reverse proxy on the same host makes every request come from 127.0.0.1; with
    TELEMETRY_DASHBOARD_TRUSTED_PROXIES=1 the address checked is the client's from X-Forwarded-For."""
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    direct = create_app(settings).test_client()
    assert direct.get("/metrics", headers=forwarded).status_code == 200  # trusts nobody's header
    proxied = create_app(settings, {"TRUSTED_PROXIES": 1}).test_client()
    assert proxied.get("/metrics", headers=forwarded).status_code == 403
    assert proxied.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
