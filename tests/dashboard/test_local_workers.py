"""Local analysis workers, attacked and used through a real OpenSSH client.

Each worker is the scheduler's bubblewrap sandbox running Debian's sshd on its own port; these
tests log in with `ssh` exactly as the page's SSH command says, run a MapReduce example over
published data, try a wrong key, look for the app database, the secret key and another
worker from inside, and check that kill and expiry leave no process behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from dashboard import database
from dashboard.expiry import sweep_once
from dashboard.models import Worker
from mapreduce import synthetic
from pipeline.config import secret_key_path
from pipeline.layout import DIMENSIONS, dimensions_from_key
from pipeline.stores import open_store
from scheduler import sandbox
from tests.support.dashboard import csrf_token, sign_in
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.skipif(shutil.which("ssh") is None, reason="the OpenSSH client is not installed"),
    pytest.mark.skipif(
        not os.access("/usr/sbin/sshd", os.X_OK),
        reason="openssh-server is not installed (make setup installs it)",
    ),
    pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available())),
]


class KeyPair:
    def __init__(self, directory: Path, name: str) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        self.path = directory / name
        self.path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        self.path.chmod(0o600)
        self.public = (
            key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
            + f" {name}@test"
        )


def ssh(worker: Worker, key: KeyPair, command: str) -> subprocess.CompletedProcess:
    """The worker's connect_command as shown, with the test's key and no host-key prompt."""
    shown = shlex.split(worker.connect_command)
    assert shown[0] == "ssh"
    options = ["-i", str(key.path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    options += ["-o", "LogLevel=ERROR", "-F", "/dev/null"]
    return subprocess.run(
        ["ssh", *options, *shown[1:], command],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def app_config() -> dict:
    return {"WORKER_LIFETIME_HOURS": 24, "WORKER_EXTEND_HOURS": 24}


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {"ada@example.org": False, "bob@example.org": False}


@pytest.fixture
def published(settings):
    return synthetic.small_dataset(open_store(settings.published_url), partitions=4, records=10)


def launch(app, email: str, key: KeyPair, name: str) -> Worker:
    client = app.test_client()
    sign_in(client, email)
    token = csrf_token(client, "/workers")
    client.post("/workers", data={"name": name, "ssh_public_key": key.public, "csrf_token": token})
    return worker_named(app, name)


def worker_named(app, name: str) -> Worker:
    with app.app_context():
        worker = database.db().scalars(select(Worker).where(Worker.name == name)).one()
        database.db().expunge(worker)
    assert worker.state == "running", worker.reason
    return worker


def sandbox_pids(worker: Worker) -> set[int]:
    """bwrap's pid and every process below it: the whole sandbox, as the host sees it."""
    root = int((Path(worker.instance_id) / "sshd.pid").read_text())
    return {root, *sandbox.descendants(root)}


def alive(pids: set[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.add(pid)
    return found


def test_ssh_in_and_run_a_mapreduce_example_over_published_data(app, published, tmp_path):
    key = KeyPair(tmp_path, "ada")
    worker = launch(app, "ada@example.org", key, "analysis")
    job = (
        "python -m mapreduce.job examples/simple_counter.py "
        "-f examples/simple_counter_filter.json -o counts.txt && cat counts.txt"
    )
    result = ssh(worker, key, job)
    assert result.returncode == 0, result.stderr
    expected: Counter = Counter()
    for object_key, records in published.items():
        dims = dimensions_from_key(object_key)
        expected[",".join(dims[name] for name in DIMENSIONS)] += len(records)
    got = {k: int(v) for k, v in (line.split("\t") for line in result.stdout.splitlines())}
    assert got == dict(expected)
    # Who and where: the unprivileged user, a home that keeps files between logins, the
    # project's Python first on PATH for a login shell too.
    again = ssh(
        worker, key, "id -un; id -u; pwd; cat counts.txt | wc -l; bash -lc 'command -v python'"
    )
    lines = again.stdout.splitlines()
    assert lines[:4] == ["worker", str(sandbox.SANDBOX_UID), "/home/worker", str(len(expected))]
    assert lines[4].startswith(str(Path(sys.executable).parent))
    # mapreduce.cat works too, on the same read-only data.
    cat = ssh(worker, key, "python -m mapreduce.cat --limit 1; touch /data/published/x")
    assert cat.stdout.count("\n") == 1 and '"dimensions"' in cat.stdout
    assert "Read-only file system" in cat.stderr


def test_a_wrong_key_is_refused(app, tmp_path):
    key, stranger = KeyPair(tmp_path, "ada"), KeyPair(tmp_path, "mallory")
    worker = launch(app, "ada@example.org", key, "mine")
    refused = ssh(worker, stranger, "id")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
    assert ssh(worker, key, "true").returncode == 0


def test_app_database_secret_key_and_other_workers_are_out_of_reach(app, settings, tmp_path):
    ada_key, bob_key = KeyPair(tmp_path, "ada"), KeyPair(tmp_path, "bob")
    ada = launch(app, "ada@example.org", ada_key, "ada-worker")
    bob = launch(app, "bob@example.org", bob_key, "bob-worker")
    assert ssh(bob, bob_key, "echo bob-secret > notes.txt").returncode == 0
    database_file = settings.database_url.removeprefix("sqlite:///")
    secret = secret_key_path(settings.data_dir)
    assert Path(database_file).exists() and secret.exists()
    targets = [
        database_file,
        str(secret),
        settings.data_dir,
        bob.instance_id,
        f"{bob.instance_id}/home/notes.txt",
        f"{ada.instance_id}/ssh/host_ed25519_key",
    ]
    probe = "; ".join(f"cat {shlex.quote(t)} || ls {shlex.quote(t)}" for t in targets)
    result = ssh(ada, ada_key, f"{probe}; env; ps -eo args")
    assert "bob-secret" not in result.stdout
    assert result.stderr.count("No such file or directory") == 2 * len(targets), result.stderr
    assert "TELEMETRY_DATABASE_URL" not in result.stdout
    assert "TELEMETRY_DASHBOARD_SECRET_KEY" not in result.stdout
    assert "TELEMETRY_SECRET_KEY" not in result.stdout
    # Only this worker's processes: one acceptor, not bob's.
    acceptors = [x for x in result.stdout.splitlines() if "acceptor.py" in x and "bwrap" not in x]
    assert len(acceptors) == 1
    # bob's key does not open ada's worker either.
    assert ssh(ada, bob_key, "id").returncode == 255


def test_the_machines_services_are_out_of_reach_over_the_network(app, tmp_path):
    """A service on the machine's 127.0.0.1 (a Redis queue, PostgreSQL, the dashboard) and
    another worker's port: a worker cannot connect to either."""
    key = KeyPair(tmp_path, "ada")
    ada = launch(app, "ada@example.org", key, "ada-net")
    bob = launch(app, "bob@example.org", KeyPair(tmp_path, "bob"), "bob-net")
    with socket.create_server(("127.0.0.1", 0)) as service:
        service.settimeout(5)
        ports = [service.getsockname()[1], int(bob.address.rsplit(":", 1)[1])]
        probe = (
            "import socket\n"
            f"for port in {ports}:\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', port), timeout=5).close()\n"
            "        print(port, 'reached')\n"
            "    except OSError as exc:\n"
            "        print(port, 'refused', exc.errno)\n"
        )
        result = ssh(ada, key, f"python -c {shlex.quote(probe)}")
        assert result.returncode == 0, result.stderr
        assert "reached" not in result.stdout and result.stdout.count("refused") == 2
        with pytest.raises(TimeoutError):
            service.accept()


def test_kill_leaves_no_process_and_no_files_behind(app, tmp_path):
    key = KeyPair(tmp_path, "ada")
    worker = launch(app, "ada@example.org", key, "doomed")
    daemon = ssh(worker, key, "setsid nohup sleep 4242 >/dev/null 2>&1 </dev/null & echo started")
    assert daemon.stdout.strip() == "started"

    def sleepers() -> set[int]:
        """The daemonised sleep among the sandbox's processes (the tree may still be settling:
        the session's shell exits and the daemon is reparented)."""
        found = set()
        for pid in sandbox_pids(worker):
            with contextlib.suppress(OSError):
                if b"4242" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
        return found

    wait_for(sleepers, 30, "the daemonised process in the sandbox")
    pids = sandbox_pids(worker)
    assert sleepers() & pids, "the daemonised process is not in the sandbox"
    client = app.test_client()
    sign_in(client, "ada@example.org")
    client.post(f"/workers/{worker.id}/kill", data={"csrf_token": csrf_token(client, "/workers")})
    assert alive(pids) == set()
    assert not Path(worker.instance_id).exists()
    assert ssh(worker, key, "true").returncode == 255


def test_warning_mail_extend_and_expiry(app, tmp_path, caplog):
    key = KeyPair(tmp_path, "ada")
    worker = launch(app, "ada@example.org", key, "expiring")
    with caplog.at_level(logging.INFO, logger="pipeline.mail"):
        warned = sweep_once(app, worker.expires_at - dt.timedelta(minutes=10))
    assert warned["warned"] == 1
    assert "to=ada@example.org subject=Worker expiring will be terminated" in caplog.text
    client = app.test_client()
    sign_in(client, "ada@example.org")
    client.post(f"/workers/{worker.id}/extend", data={"csrf_token": csrf_token(client, "/workers")})
    assert sweep_once(app, worker.expires_at + dt.timedelta(minutes=1))["terminated"] == 0
    assert ssh(worker, key, "echo still here").stdout == "still here\n"
    pids = sandbox_pids(worker)
    extended = worker_named(app, "expiring")
    assert sweep_once(app, extended.expires_at + dt.timedelta(minutes=1))["terminated"] == 1
    assert alive(pids) == set()
    assert not Path(worker.instance_id).exists()


def test_the_readme_analyst_walkthrough(app, settings, published, tmp_path):
    """README "Analysts": launch by API, SSH in, run a job, package it, copy it out, schedule it."""
    from dashboard.api_tokens import create_token
    from dashboard.models import User

    key = KeyPair(tmp_path, "ada")
    with app.app_context():
        user = database.db().scalar(select(User).where(User.email == "ada@example.org"))
        _token, secret = create_token(database.db(), user, "walkthrough")
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {secret}"}
    reply = api.post(
        "/api/workers", json={"name": "scratch", "ssh_public_key": key.public}, headers=bearer
    )
    assert reply.status_code == 201, reply.get_json()
    worker = worker_named(app, "scratch")
    assert reply.get_json()["worker"]["connect_command"] == worker.connect_command
    session = "\n".join(
        [
            "set -e",
            "python -m mapreduce.cat --limit 2 | wc -l",
            "python -m mapreduce.job examples/osdistribution.py "
            "-f examples/osdistribution_filter.json -o os.txt",
            "mkdir -p myjob && cp examples/osdistribution.py examples/osdistribution_filter.json myjob/",
            "cat > myjob/run.sh <<'SH'",
            'python -m mapreduce.job osdistribution.py -f osdistribution_filter.json -o "$OUTPUT_DIR/os.txt"',
            "SH",
            "tar czf myjob.tar.gz -C myjob .",
        ]
    )
    result = ssh(worker, key, session)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "2"
    port = worker.address.rsplit(":", 1)[1]
    tarball = tmp_path / "myjob.tar.gz"
    copy = subprocess.run(
        ["scp", "-i", str(key.path), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"]
        + ["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-F", "/dev/null"]
        + ["-P", port, "worker@127.0.0.1:myjob.tar.gz", str(tarball)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert copy.returncode == 0, copy.stderr
    answer_in_worker = ssh(worker, key, "cat os.txt").stdout
    fields = {
        "name": "os-daily",
        "command": "bash run.sh",
        "output_dir": "output",
        "frequency": "daily",
        "hour": "6",
        "timeout_minutes": "60",
    }
    with tarball.open("rb") as upload:
        created = api.post(
            "/api/jobs",
            data={**fields, "tarball": (upload, "myjob.tar.gz")},
            headers=bearer,
            content_type="multipart/form-data",
        )
    assert created.status_code == 201, created.get_json()
    run = subprocess.run(
        [sys.executable, "-m", "scheduler", "run-now", "os-daily", "--wait"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    public = open_store(settings.public_url)
    assert public.get("os-daily/data/os.txt").decode() == answer_in_worker


def test_a_worker_whose_sandbox_ended_is_cleaned_up_by_the_sweep(app, tmp_path, caplog):
    key = KeyPair(tmp_path, "ada")
    worker = launch(app, "ada@example.org", key, "crashed")
    pids = sandbox_pids(worker)
    from dashboard.workers import local

    proc = local._running[worker.instance_id]
    sandbox.kill(proc)  # as if its sshd had died, or the process that ran it
    proc.wait(10)
    with caplog.at_level(logging.INFO, logger="pipeline.mail"):
        assert sweep_once(app)["terminated"] == 1
    with app.app_context():
        after = database.db().get(Worker, worker.id)
        assert after.state == "terminated" and "stopped by itself" in after.reason
    assert "subject=Worker crashed has stopped" in caplog.text
    assert alive(pids) == set() and not Path(worker.instance_id).exists()


def test_a_worker_started_by_another_dashboard_process_is_killed_by_pid(app, tmp_path):
    from dashboard.workers import local

    key = KeyPair(tmp_path, "ada")
    worker = launch(app, "ada@example.org", key, "elsewhere")
    pids = sandbox_pids(worker)
    with local._lock:  # this process forgets it, as a second gunicorn worker never knew it
        proc = local._running.pop(worker.instance_id)
    assert sweep_once(app)["terminated"] == 0  # still running: found by its pid file
    client = app.test_client()
    sign_in(client, "ada@example.org")
    client.post(f"/workers/{worker.id}/kill", data={"csrf_token": csrf_token(client, "/workers")})
    proc.wait(10)  # reap it (this test process is its parent after all)
    assert alive(pids) == set() and not Path(worker.instance_id).exists()


def failed_launch(app, tmp_path, name: str) -> Worker:
    key = KeyPair(tmp_path, "ada")
    client = app.test_client()
    sign_in(client, "ada@example.org")
    token = csrf_token(client, "/workers")
    client.post("/workers", data={"name": name, "ssh_public_key": key.public, "csrf_token": token})
    with app.app_context():
        return database.db().scalars(select(Worker).where(Worker.name == name)).one()


def test_without_a_sandbox_the_launch_fails_with_the_reason(app, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "available", lambda *a: "user namespaces are disabled")
    worker = failed_launch(app, tmp_path, "nosandbox")
    assert worker.state == "failed"
    assert worker.reason == "cannot start a local worker: user namespaces are disabled"
    assert not (Path(settings.data_dir) / "workers" / f"{worker.id}-nosandbox").exists()


def test_an_sshd_that_cannot_start_fails_the_launch_and_leaves_nothing(
    app, settings, tmp_path, monkeypatch
):
    from dashboard.workers import local

    monkeypatch.setattr(local, "SSHD", "/bin/false")  # refuses any configuration
    worker = failed_launch(app, tmp_path, "nosshd")
    assert worker.state == "failed"
    assert worker.reason == (
        "the worker's sshd did not start: sshd refused its configuration (exit 1)"
    )
    assert not (Path(settings.data_dir) / "workers" / f"{worker.id}-nosshd").exists()
    assert local._running == {} and local._relays == {}
