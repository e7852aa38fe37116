"""Analysis workers: SSH key parsing, launch/extend/kill on the local provider, permissions,
the expiry sweep (warning mail over real SMTP, termination at expiry), and the EC2 provider
against moto's EC2 server."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from dashboard import DEFAULT_CONFIG, create_app, database
from dashboard.errors import SSHKeyError
from dashboard.expiry import sweep_once
from dashboard.models import Worker
from dashboard.workers import get_provider
from dashboard.workers.ec2 import EXPIRES_TAG, EXPIRY_SCRIPT
from dashboard.workers.sshkeys import normalise_ssh_public_key
from dashboard.workers.wheel import build_wheel, latest_wheel_key, publish_wheel
from pipeline.errors import ConfigError
from pipeline.stores import open_store
from scheduler.models import utcnow
from tests.support.dashboard import add_user, count, csrf_token, public_key, sign_in
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_config() -> dict:
    return {"WORKER_LIFETIME_HOURS": 24, "WORKER_EXTEND_HOURS": 24}


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {"ada@example.org": False, "bob@example.org": False}


@pytest.fixture
def signed_in_as() -> str:
    return "ada@example.org"


def private_key_text() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_real_public_keys_are_accepted_and_normalised(kind):
    key = public_key(kind)
    assert normalise_ssh_public_key("  \n" + key + "\n") == key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ssh-ed25519",
        "ssh-ed25519 AAAAnot-base64!!",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x",
        "hello world",
        "ssh-ed25519 " + "A" * 68,
    ],
)
def test_things_that_only_look_like_keys_are_refused(text):
    with pytest.raises(SSHKeyError):
        normalise_ssh_public_key(text)


def test_private_keys_and_several_keys_are_refused():
    with pytest.raises(SSHKeyError, match="private key"):
        normalise_ssh_public_key(private_key_text())
    with pytest.raises(SSHKeyError, match="exactly one"):
        normalise_ssh_public_key(public_key() + "\n" + public_key())


def test_a_key_with_a_swapped_type_is_refused():
    body = public_key("ed25519").split()[1]
    with pytest.raises(SSHKeyError):
        normalise_ssh_public_key(f"ssh-rsa {body}")


def launch(client, name="scratch", key=None, csrf=True):
    data = {"name": name, "ssh_public_key": key if key is not None else public_key()}
    if csrf:
        data["csrf_token"] = csrf_token(client, "/workers")
    return client.post("/workers", data=data)


def workers(app) -> list[Worker]:
    with app.app_context():
        return list(database.db().scalars(select(Worker).order_by(Worker.id)))


def test_launching_a_local_worker_shows_state_command_and_kill_time(app, client, settings):
    before = utcnow()
    response = launch(client)
    assert response.status_code == 302
    [worker] = workers(app)
    assert worker.state == "running" and worker.provider == "local"
    assert (
        dt.timedelta(hours=23, minutes=59)
        < worker.expires_at - before
        <= dt.timedelta(hours=24, minutes=1)
    )
    workspace = Path(worker.instance_id)
    assert workspace.parent == Path(settings.data_dir) / "workers"
    assert (workspace / "ssh" / "authorized_keys").read_text().startswith("ssh-ed25519 ")
    port = worker.address.rsplit(":", 1)[1]
    assert worker.connect_command == f"ssh -p {port} worker@127.0.0.1"
    html = client.get("/workers").get_data(as_text=True)
    assert worker.connect_command in html
    assert worker.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") in html
    assert "Extend 24 h" in html and "Kill" in html


@pytest.mark.parametrize(
    ("field", "name", "key", "message"),
    [
        (
            "ssh_public_key",
            "w1",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJunk",
            "not a valid OpenSSH public key",
        ),
        ("ssh_public_key", "w1", "", "required"),
        ("ssh_public_key", "w1", "x" * 16001, "16000"),
        ("name", "", None, "required"),
        ("name", "bad name!", None, "letters, digits"),
        ("name", "n" * 101, None, "100"),
    ],
)
def test_bad_worker_input_gives_inline_error_and_launches_nothing(
    app, client, settings, field, name, key, message
):
    response = launch(client, name=name, key=key)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'id="field-{field}"' in html and message in html
    assert count(app, Worker) == 0
    assert not (Path(settings.data_dir) / "workers").exists() or not any(
        (Path(settings.data_dir) / "workers").iterdir()
    )


def test_worker_launch_without_csrf_is_400(app, client):
    assert launch(client, csrf=False).status_code == 400
    assert count(app, Worker) == 0


def test_extend_pushes_the_kill_time_and_rearms_the_warning(app, client):
    launch(client)
    [worker] = workers(app)
    with app.app_context():
        database.db().get(Worker, worker.id).warned_at = utcnow()
        database.db().commit()
    client.post(f"/workers/{worker.id}/extend", data={"csrf_token": csrf_token(client, "/workers")})
    [after] = workers(app)
    assert after.expires_at - worker.expires_at == dt.timedelta(hours=24)
    assert after.warned_at is None


def test_kill_terminates_and_removes_the_workspace(app, client):
    launch(client)
    [worker] = workers(app)
    client.post(f"/workers/{worker.id}/kill", data={"csrf_token": csrf_token(client, "/workers")})
    [after] = workers(app)
    assert after.state == "terminated" and "killed by ada@example.org" in after.reason
    assert not Path(worker.instance_id).exists()
    assert (
        client.post(
            f"/workers/{worker.id}/extend", data={"csrf_token": csrf_token(client, "/workers")}
        ).status_code
        == 409
    )


def test_another_users_worker_is_404_and_hidden(app, client):
    launch(client)
    [worker] = workers(app)
    bob = app.test_client()
    sign_in(bob, "bob@example.org")
    token = csrf_token(bob, "/workers")
    assert bob.post(f"/workers/{worker.id}/kill", data={"csrf_token": token}).status_code == 404
    assert bob.post(f"/workers/{worker.id}/extend", data={"csrf_token": token}).status_code == 404
    assert "scratch" not in bob.get("/workers").get_data(as_text=True)
    assert workers(app)[0].state == "running"


def test_an_admin_sees_and_acts_on_another_users_worker_a_normal_user_gets_404(app, client):
    add_user(app, "root@example.org", admin=True)
    launch(client)
    [worker] = workers(app)
    bob = app.test_client()
    sign_in(bob, "bob@example.org")
    bob_token = csrf_token(bob, "/workers")
    for action in ("extend", "kill"):
        response = bob.post(f"/workers/{worker.id}/{action}", data={"csrf_token": bob_token})
        assert response.status_code == 404
    assert f'id="worker-{worker.id}"' not in bob.get("/workers").get_data(as_text=True)
    assert workers(app)[0].expires_at == worker.expires_at

    admin = app.test_client()
    sign_in(admin, "root@example.org")
    html = admin.get("/workers").get_data(as_text=True)
    row = html[html.index(f'id="worker-{worker.id}"') :].split("</tr>", 1)[0]
    assert "<td>scratch</td>" in row and "<td>ada@example.org</td>" in row  # owner column
    assert f"/workers/{worker.id}/extend" in row and f"/workers/{worker.id}/kill" in row

    token = csrf_token(admin, "/workers")
    extended = admin.post(f"/workers/{worker.id}/extend", data={"csrf_token": token})
    assert extended.status_code == 302
    [after] = workers(app)
    assert after.expires_at - worker.expires_at == dt.timedelta(hours=24)
    assert after.owner == "ada@example.org"  # still ada's: her mail, her list

    killed = admin.post(f"/workers/{worker.id}/kill", data={"csrf_token": token})
    assert killed.status_code == 302
    [after] = workers(app)
    assert after.state == "terminated" and after.reason == "killed by root@example.org"
    assert not Path(worker.instance_id).exists()
    assert "killed by root@example.org" in client.get("/workers").get_data(as_text=True)


def test_kill_and_extend_without_csrf_are_400(app, client):
    launch(client)
    [worker] = workers(app)
    assert client.post(f"/workers/{worker.id}/kill").status_code == 400
    assert client.post(f"/workers/{worker.id}/extend").status_code == 400
    assert workers(app)[0].state == "running"


def test_expiry_sweep_warns_an_hour_before_then_terminates(settings, smtp_server):
    mail_settings = dataclasses.replace(settings, smtp_url=smtp_server.url)
    app = create_app(mail_settings)
    add_user(app, "ada@example.org")
    client = app.test_client()
    sign_in(client, "ada@example.org")
    launch(client)
    [worker] = workers(app)
    assert sweep_once(app, worker.expires_at - dt.timedelta(hours=2)) == {
        "warned": 0,
        "terminated": 0,
        "errors": 0,
    }
    assert sweep_once(app, worker.expires_at - dt.timedelta(minutes=59)) == {
        "warned": 1,
        "terminated": 0,
        "errors": 0,
    }
    [warning] = smtp_server.wait_for(1)
    assert warning["To"] == "ada@example.org"
    assert "will be terminated" in warning["Subject"]
    assert sweep_once(app, worker.expires_at - dt.timedelta(minutes=30))["warned"] == 0  # once only
    assert sweep_once(app, worker.expires_at + dt.timedelta(seconds=1)) == {
        "warned": 0,
        "terminated": 1,
        "errors": 0,
    }
    [after] = workers(app)
    assert after.state == "terminated" and after.reason == "expired"
    assert not Path(worker.instance_id).exists()
    messages = smtp_server.wait_for(2)
    assert "was terminated" in messages[1]["Subject"]


def test_expire_workers_command_sweeps_once_for_cron(app, client, capsys):
    """Under another WSGI server no sweeper thread runs: cron calls this instead."""
    from dashboard.__main__ import main

    launch(client)
    [worker] = workers(app)
    state = app.extensions["telemetry"]
    with state.sessions() as session:
        session.get(Worker, worker.id).expires_at = worker.expires_at - dt.timedelta(days=2)
        session.commit()
    assert main(["expire-workers"]) == 0
    assert "terminated: 1" in capsys.readouterr().out
    [after] = workers(app)
    assert after.state == "terminated" and after.reason == "expired"
    assert main(["expire-workers"]) == 0
    assert "terminated: 0" in capsys.readouterr().out


def test_a_warning_that_cannot_be_mailed_is_retried(settings):
    app = create_app(dataclasses.replace(settings, smtp_url=f"smtp://127.0.0.1:{free_port()}"))
    add_user(app, "ada@example.org")
    client = app.test_client()
    sign_in(client, "ada@example.org")
    launch(client)
    [worker] = workers(app)
    counts = sweep_once(app, worker.expires_at - dt.timedelta(minutes=10))
    assert counts == {"warned": 0, "terminated": 0, "errors": 1}
    assert workers(app)[0].warned_at is None


MOTO_IMAGE = "ami-12c6146b"  # one of moto's built-in AMIs


PROFILE = "telemetry-worker-read-published"


def ec2_config() -> dict:
    return {
        "WORKER_PROVIDER": "ec2",
        "WORKER_EC2_AMI": MOTO_IMAGE,
        "WORKER_EC2_INSTANCE_PROFILE": PROFILE,
    }


@pytest.fixture(scope="session")
def package_wheel(tmp_path_factory) -> Path:
    """A real wheel of this source tree, built once (pure Python, as publish-wheel builds it)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def ec2_settings(settings, moto, package_wheel):
    """Published and code stores on moto's S3, the wheel published, the operator's profile made."""
    ec2_settings = dataclasses.replace(
        settings,
        published_url="s3://published/data",
        code_url="s3://code",
        s3_endpoint_url=moto.endpoint,
        ec2_endpoint_url=moto.endpoint,
    )
    open_store(ec2_settings.published_url, create=True)
    publish_wheel(open_store(ec2_settings.code_url, create=True), package_wheel)
    boto3.client("iam", endpoint_url=moto.endpoint).create_instance_profile(
        InstanceProfileName=PROFILE
    )
    return ec2_settings


@pytest.fixture
def ec2_app(ec2_settings, moto):
    app = create_app(ec2_settings, ec2_config())
    add_user(app, "ada@example.org")
    return app


def ec2_instance(moto, instance_id: str) -> dict:
    ec2 = boto3.client("ec2", endpoint_url=moto.endpoint, region_name="us-east-1")
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def ec2_user_data(moto, instance_id: str) -> str:
    ec2 = boto3.client("ec2", endpoint_url=moto.endpoint, region_name="us-east-1")
    reply = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(reply["UserData"]["Value"]).decode()


def test_the_ec2_provider_without_an_ami_is_refused_at_start(settings):
    with pytest.raises(ConfigError, match="^TELEMETRY_DASHBOARD_WORKER_EC2_AMI: is not set"):
        create_app(settings, {"WORKER_PROVIDER": "ec2"})
    create_app(settings, {"WORKER_PROVIDER": "local"})  # the local provider needs none


def test_python_m_dashboard_without_an_ami_exits_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "DASHBOARD_"))}
    env.update(
        TELEMETRY_DATA_DIR=str(tmp_path / "var"),
        TELEMETRY_DASHBOARD_WORKER_PROVIDER="ec2",
        PYTHONPATH=str(REPO),
    )
    result = subprocess.run(
        [sys.executable, "-m", "dashboard", "--port", str(free_port())],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,  # a dashboard that started anyway would serve until killed
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output
    assert output.strip().splitlines() == [
        "error: TELEMETRY_DASHBOARD_WORKER_EC2_AMI: is not set: the ec2 worker provider needs the AMI"
        " its workers boot"
    ]


def test_the_ec2_provider_without_an_instance_profile_is_refused_at_start(settings):
    config = {"WORKER_PROVIDER": "ec2", "WORKER_EC2_AMI": MOTO_IMAGE}
    with pytest.raises(
        ConfigError, match="^TELEMETRY_DASHBOARD_WORKER_EC2_INSTANCE_PROFILE: is not set"
    ):
        create_app(settings, config)


def test_ec2_workers_use_their_own_endpoint_not_the_s3_one(settings, moto):
    dead = f"http://127.0.0.1:{free_port()}"
    config = {**DEFAULT_CONFIG, **ec2_config()}
    settings = dataclasses.replace(settings, s3_endpoint_url=dead, ec2_endpoint_url=moto.endpoint)
    provider = get_provider("ec2", settings, config)
    assert provider.client.meta.endpoint_url == moto.endpoint


def test_ec2_worker_starts_an_instance_with_the_key_and_kill_terminates_it(ec2_app, moto):
    client = ec2_app.test_client()
    sign_in(client, "ada@example.org")
    key = public_key()
    assert launch(client, key=key).status_code == 302
    client.get("/workers")  # refreshes the address of a booting instance
    [worker] = workers(ec2_app)
    assert worker.provider == "ec2" and worker.instance_id.startswith("i-")
    ec2 = boto3.client("ec2", endpoint_url=moto.endpoint, region_name="us-east-1")
    instance = ec2.describe_instances(InstanceIds=[worker.instance_id])["Reservations"][0][
        "Instances"
    ][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["owner"] == "ada@example.org" and tags["telemetry-worker-id"] == str(worker.id)
    assert key in ec2_user_data(moto, worker.instance_id)
    assert worker.connect_command.startswith("ssh ubuntu@")
    client.post(f"/workers/{worker.id}/kill", data={"csrf_token": csrf_token(client, "/workers")})
    state = ec2.describe_instances(InstanceIds=[worker.instance_id])["Reservations"][0][
        "Instances"
    ][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    assert workers(ec2_app)[0].state == "terminated"


def test_ec2_expiry_terminates_the_instance(ec2_app, moto):
    client = ec2_app.test_client()
    sign_in(client, "ada@example.org")
    launch(client)
    [worker] = workers(ec2_app)
    assert sweep_once(ec2_app, worker.expires_at + dt.timedelta(minutes=1))["terminated"] == 1
    ec2 = boto3.client("ec2", endpoint_url=moto.endpoint, region_name="us-east-1")
    state = ec2.describe_instances(InstanceIds=[worker.instance_id])["Reservations"][0][
        "Instances"
    ][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")


def test_unreachable_ec2_records_a_failed_worker(ec2_settings, moto):
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(dataclasses.replace(ec2_settings, ec2_endpoint_url=dead), ec2_config())
    add_user(app, "ada@example.org")
    client = app.test_client()
    sign_in(client, "ada@example.org")
    response = launch(client)
    assert response.status_code == 302
    [worker] = workers(app)
    assert worker.state == "failed" and "EC2 refused" in worker.reason
    assert "EC2 refused" in client.get("/workers").get_data(as_text=True)


def test_ec2_worker_gets_the_instance_profile_and_installs_the_published_wheel(
    ec2_app, moto, package_wheel, tmp_path
):
    client = ec2_app.test_client()
    sign_in(client, "ada@example.org")
    assert launch(client).status_code == 302
    [worker] = workers(ec2_app)
    assert worker.state in ("launching", "running"), worker.reason
    instance = ec2_instance(moto, worker.instance_id)
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{PROFILE}")
    user_data = ec2_user_data(moto, worker.instance_id)
    assert "shutdown -h +" not in user_data  # no fixed cap: the kill time follows "extend"
    assert "TELEMETRY_DATABASE_URL" not in user_data and "SECRET" not in user_data
    assert "export TELEMETRY_PUBLISHED_URL=s3://published/data" in user_data
    install = [line for line in user_data.splitlines() if "pip install" in line]
    assert len(install) == 1 and "/opt/telemetry/bin/pip install" in install[0]
    # The URL in the user data serves the very wheel that was published, without credentials.
    url = install[0].split("-o ", 1)[1].split(" ", 2)[1].strip("'")
    with urllib.request.urlopen(url, timeout=30) as reply:
        assert reply.read() == package_wheel.read_bytes()
    with zipfile.ZipFile(package_wheel) as wheel:
        names = wheel.namelist()
    assert "mapreduce/job.py" in names and "mapreduce/cat.py" in names
    assert not any(name.endswith(".so") for name in names)  # pure: any CPU, any Python


def test_ec2_extend_moves_the_kill_time_the_instance_reads(ec2_app, moto):
    client = ec2_app.test_client()
    sign_in(client, "ada@example.org")
    launch(client)
    [worker] = workers(ec2_app)

    def tag() -> int:
        tags = {t["Key"]: t["Value"] for t in ec2_instance(moto, worker.instance_id)["Tags"]}
        return int(tags[EXPIRES_TAG])

    assert tag() == int(worker.expires_at.replace(tzinfo=dt.UTC).timestamp())
    client.post(f"/workers/{worker.id}/extend", data={"csrf_token": csrf_token(client, "/workers")})
    [extended] = workers(ec2_app)
    assert extended.expires_at > worker.expires_at
    assert tag() == int(extended.expires_at.replace(tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    ("tag_offset", "metadata_answers", "shuts_down"),
    [(-4000, True, True), (-100, True, False), (+3600, True, False), (None, False, True)],
)
def test_the_instance_expiry_script_follows_the_tag(
    tmp_path, tag_offset, metadata_answers, shuts_down
):
    """EXPIRY_SCRIPT itself under sh, with curl answering as the metadata service would."""
    now = int(dt.datetime.now(dt.UTC).timestamp())
    state = tmp_path / "state"
    state.mkdir()
    (state / "expires-at").write_text(str(now - 7200))  # the kill time written at launch
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answer = f"echo {now + tag_offset}" if metadata_answers else "exit 7"
    (bin_dir / "curl").write_text(
        f'#!/bin/sh\ncase "$*" in *api/token*) echo t;; *) {answer};; esac\n'
    )
    (bin_dir / "shutdown").write_text(f'#!/bin/sh\necho "$*" > {tmp_path}/shutdown\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = tmp_path / "expiry"
    script.write_text(EXPIRY_SCRIPT)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TELEMETRY_WORKER_STATE": str(state)}
    assert subprocess.run(["sh", str(script)], env=env, timeout=30).returncode == 0
    assert (tmp_path / "shutdown").exists() == shuts_down


def test_publish_wheel_command_makes_the_wheel_the_one_workers_install(settings, package_wheel):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "dashboard", "publish-wheel", "--wheel", str(package_wheel)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    store = open_store(settings.code_url)
    key = latest_wheel_key(store)
    assert result.stdout.strip() == f"published {key}; new EC2 workers install it"
    assert store.get(key) == package_wheel.read_bytes()
    missing = subprocess.run(
        [sys.executable, "-m", "dashboard", "publish-wheel", "--wheel", "/nonexistent.whl"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: /nonexistent.whl: no such file"
