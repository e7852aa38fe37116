"""The one command (`make run` = `python -m launcher`): start, publish a submission, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import lz4.frame
import pytest

from tests.support.servers import free_port, wait_for_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def published_records(published: Path) -> dict[str, dict]:
    records = {}
    for path in published.rglob("*.lz4"):
        if path.relative_to(published).parts[0] in ("errors", "namespaces"):
            continue
        for line in lz4.frame.decompress(path.read_bytes()).decode().splitlines():
            doc_id, payload = line.split("\t", 1)
            records[doc_id] = json.loads(payload)
    return records


def start_runall(env, cwd, log_path, ingest_port, dashboard_port, *extra) -> subprocess.Popen:
    """`python -m launcher` on the given ports, its output in `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "launcher", *extra]
            + ["--ingest-port", str(ingest_port), "--dashboard-port", str(dashboard_port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )


def stop_runall(process: subprocess.Popen, signum: int, log_path) -> int:
    """Send `signum` and wait for a clean exit; the log is printed for a failing test."""
    process.send_signal(signum)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    finally:
        print(log_path.read_text()[-8000:])  # shown by pytest when the test fails


def test_one_command_runs_the_pipeline_and_stops_cleanly(tmp_path, shared_fixtures):
    data_dir = tmp_path / "var"
    ingest_port, dashboard_port = free_port(), free_port()
    env = dict(
        os.environ,
        TELEMETRY_DATA_DIR=str(data_dir),
        TELEMETRY_SHARED_FIXTURES=str(shared_fixtures),
        TELEMETRY_SPOOL_MAX_AGE_SECONDS="1",
    )
    log_path = tmp_path / "runall.log"
    process = start_runall(env, tmp_path, log_path, ingest_port, dashboard_port)
    try:
        wait_for_port(ingest_port, 90)
        wait_for_port(dashboard_port, 90)
        # The demo submissions (the real Firefox 23 idle-daily one among them) get published.
        published = data_dir / "published"
        records = wait_for(
            lambda: published_records(published) if published.exists() else None,
            120,
            "demo records",
        )
        fixture_id = (
            (shared_fixtures / "payloads" / "idle-daily-firefox-23.0.1.path")
            .read_text()
            .split("/")[3]
        )
        wait_for(lambda: fixture_id in published_records(published), 60, "the fixture record")

        # A submission of our own goes all the way through too.
        doc_id = str(uuid.uuid4())
        body = (shared_fixtures / "payloads" / "idle-daily-firefox-23.0.1.json.gz").read_bytes()
        request = urllib.request.Request(
            f"http://127.0.0.1:{ingest_port}/submit/telemetry/{doc_id}/idle-daily/Firefox/23.0.1/release/20130814063812",
            data=body,
            method="POST",
            headers={"Content-Encoding": "gzip"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        records = wait_for(
            lambda: (r := published_records(published)).get(doc_id) and r, 120, "our record"
        )
        assert records[doc_id]["ver"] == 2
        assert (
            "histogramErrors" not in records[doc_id]
            or not records[doc_id]["histogramErrors"]["invalid"]
        )

        with urllib.request.urlopen(
            f"http://127.0.0.1:{dashboard_port}/login", timeout=30
        ) as response:
            assert response.status == 200

        # The example job was scheduled and run once over the published demo data.
        summary_path = data_dir / "public" / "published-summary" / "data" / "summary.json"
        wait_for(summary_path.exists, 120, "the example job's published summary")
        assert json.loads(summary_path.read_text())["objects"] >= 1
        with urllib.request.urlopen(
            f"http://127.0.0.1:{dashboard_port}/public/published-summary/data/", timeout=30
        ) as response:
            assert "summary.json" in response.read().decode()

        # The aggregates system job ran over the demo data: /telemetry shows real histograms.
        index_path = data_dir / "public" / "telemetry-aggregates" / "data" / "index.json"
        wait_for(index_path.exists, 180, "the aggregates system job's index")
        query = "metric=GC_MS&channel=release&version=23.0.1"
        with urllib.request.urlopen(
            f"http://127.0.0.1:{dashboard_port}/telemetry/api/v1/histogram?{query}", timeout=30
        ) as response:
            answer = json.loads(response.read())
        assert answer["submissions"] >= 1 and sum(answer["counts"]) > 0
    finally:
        code = stop_runall(process, signal.SIGINT, log_path)
    output = log_path.read_text()
    assert code == 0, output[-4000:]
    assert "exited unexpectedly" not in output
    assert (data_dir / "DEMO-DATA.txt").is_file()  # says what was added and how to avoid it
    demo_builds = {
        path.name.split(".")[0]
        for path in (data_dir / "published" / "main" / "Firefox" / "esr" / "153.7.0").iterdir()
    }
    # the generated pings are marked as demo data; beside them only the real ESR 153 fixture
    # ping (its own build ID), posted for the /telemetry views
    assert demo_builds == {"demo", "20261103151912"}


ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


def run_cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def stored_users_and_jobs(data_dir: Path) -> tuple[dict, dict]:
    """{email: (id, password_hash)}, {job name: (id, owner, tarball_key)} read from app.db."""
    from sqlalchemy import select

    from dashboard.models import User
    from pipeline.db import make_engine
    from scheduler.models import Job

    engine = make_engine(f"sqlite:///{data_dir / 'app.db'}")
    try:
        with engine.connect() as conn:
            users = {
                e: (i, h)
                for i, e, h in conn.execute(select(User.id, User.email, User.password_hash))
            }
            jobs = {
                n: (i, o, k)
                for i, n, o, k in conn.execute(select(Job.id, Job.name, Job.owner, Job.tarball_key))
            }
    finally:
        engine.dispose()
    return users, jobs


def sign_in_and_get(base: str, path: str, email: str, password: str) -> str:
    """Sign in to the running dashboard over HTTP (cookie + CSRF token) and fetch `path`."""
    import http.cookiejar

    from tests.support.dashboard import CSRF_RE

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{base}/login", timeout=30) as response:
        match = CSRF_RE.search(response.read().decode())
    assert match, "no csrf_token on /login"
    form = urllib.parse.urlencode(
        {"email": email, "password": password, "csrf_token": match.group(1) or match.group(2)}
    ).encode()
    with opener.open(f"{base}/login", data=form, timeout=30) as response:
        assert "/login" not in response.url, "sign-in failed"
    with opener.open(f"{base}{path}", timeout=30) as response:
        return response.read().decode()


def test_one_command_keeps_existing_data(tmp_path):
    """A user and a job made before start are served while running and still there after a
    clean stop, as is other data under TELEMETRY_DATA_DIR."""
    data_dir = tmp_path / "var"
    (data_dir / "published" / "keep").mkdir(parents=True)
    marker = data_dir / "published" / "keep" / "me.txt"
    marker.write_text("old data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATA_DIR"] = str(data_dir)

    tarball = tmp_path / "summary.tar.gz"
    run_cli(env, "scheduler.examples.build", str(tarball))
    run_cli(
        env,
        "scheduler",
        "add",
        "--name",
        "kept-job",
        "--tarball",
        str(tarball),
        "--command",
        "python summarise.py",
        "--frequency",
        "weekly",
        "--day-of-week",
        "mon",
        "--owner",
        "ana@example.com",
    )
    run_cli(env, "dashboard", "create-user", "ana@example.com", "--password", PASSWORD)
    users_before, jobs_before = stored_users_and_jobs(data_dir)
    assert set(users_before) == {"ana@example.com"} and set(jobs_before) == {"kept-job"}
    tarball_key = jobs_before["kept-job"][2]
    assert (data_dir / "code" / tarball_key).is_file()

    ingest_port, dashboard_port = free_port(), free_port()
    log_path = tmp_path / "runall.log"
    # No --no-demo: a data directory in use never gets demo data.
    process = start_runall(env, tmp_path, log_path, ingest_port, dashboard_port)
    try:
        wait_for_port(ingest_port, 90)
        wait_for_port(dashboard_port, 90)
        wait_for(lambda: "no demo data" in log_path.read_text(), 60, "the demo decision")
        jobs_page = sign_in_and_get(
            f"http://127.0.0.1:{dashboard_port}", "/jobs", "ana@example.com", PASSWORD
        )
        assert "kept-job" in jobs_page
    finally:
        code = stop_runall(process, signal.SIGTERM, log_path)
    assert code == 0
    assert marker.read_text() == "old data"
    assert stored_users_and_jobs(data_dir) == (users_before, jobs_before)  # no demo job
    assert (data_dir / "code" / tarball_key).is_file()
    assert not (data_dir / "DEMO-DATA.txt").exists()
    assert "demo submissions" not in log_path.read_text()
    assert not published_records(data_dir / "published")
    listed = run_cli(env, "scheduler", "list")
    assert "kept-job" in listed.stdout and "ana@example.com" in listed.stdout


def test_a_taken_port_is_one_clear_line_and_nothing_starts(tmp_path):
    """Before: the banner said "running", then ingest died with a 25-line traceback."""
    import socket

    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATA_DIR"] = str(tmp_path / "var")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "launcher", "--ingest-port", str(port)]
            + ["--dashboard-port", str(free_port())],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: ingest: 127.0.0.1:{port} is already in use by another program; choose another "
        f'port with --ingest-port PORT (make run ARGS="--ingest-port {port + 1}")'
    ]
    assert "running" not in done.stdout and "Traceback" not in done.stderr
    assert not (tmp_path / "var").exists()  # nothing started, nothing written


def test_make_run_passes_args_to_runall():
    done = subprocess.run(
        ["make", "-n", "run", "ARGS=--no-demo --ingest-port 8081"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "-m launcher --no-demo --ingest-port 8081" in done.stdout


def test_only_a_missing_or_empty_data_dir_is_new(tmp_path):
    from launcher.runall import is_new_data_dir

    assert is_new_data_dir(str(tmp_path / "missing"))
    assert is_new_data_dir(str(tmp_path))
    (tmp_path / "app.db").write_bytes(b"")
    assert not is_new_data_dir(str(tmp_path))


def test_ports_are_checked_before_anything_starts():
    """Unit checks of the same one-line errors: a port range and two servers on one port."""
    import argparse

    from launcher.runall import Service, check_ports, port_number

    with pytest.raises(argparse.ArgumentTypeError, match="1 to 65535"):
        port_number("99999")
    services = [Service("ingest", [], 8080), Service("dashboard", [], 8080)]
    assert check_ports(services, "127.0.0.1") == (
        "error: --ingest-port and --dashboard-port are both 8080; give them different ports"
    )
