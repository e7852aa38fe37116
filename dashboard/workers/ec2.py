"""Workers on EC2: one instance per worker that can read the data and run this package.

What an instance gets:
- the user's key for WORKER_EC2_SSH_USER (cloud-init);
- read-only access to the published store through the instance profile the operator made
  for it (WORKER_EC2_INSTANCE_PROFILE; its role's policy allows s3:GetObject/ListBucket on the
  published bucket and nothing else). No credentials are ever put in the user data;
- this package, installed into /opt/telemetry from the wheel in the code store (downloaded by a
  pre-signed URL, see `dashboard.workers.wheel`), on PATH for every login, with
  TELEMETRY_PUBLISHED_URL (and TELEMETRY_S3_ENDPOINT_URL when set) in /etc/profile.d;
- its kill time in the tag `telemetry-expires-at` (epoch seconds), which "extend" moves.
  A cron entry reads the tag through the instance metadata service every 5 minutes
  (instance metadata tags are enabled at launch) and shuts the instance down -- terminating
  it, as its shutdown behaviour is `terminate` -- SELF_TERMINATE_GRACE_SECONDS after that
  time: a backstop for a dashboard that is down, which otherwise terminates it on time.

Options (the dashboard section, `TELEMETRY_DASHBOARD_*` variables): WORKER_EC2_AMI and
WORKER_EC2_INSTANCE_PROFILE (required, no default), WORKER_EC2_INSTANCE_TYPE,
WORKER_EC2_SSH_USER; the endpoint is TELEMETRY_EC2_ENDPOINT_URL, shared with the scheduler's ec2
runner (unset: AWS's own EC2 endpoint; the S3 endpoint is never used for EC2). The region is boto3's own (AWS_DEFAULT_REGION, else the profile in
~/.aws/config), us-east-1 when it resolves none.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex

from botocore.exceptions import BotoCoreError, ClientError

from dashboard.errors import WorkerProviderError
from dashboard.workers.base import LaunchResult, WorkerProvider
from dashboard.workers.wheel import latest_wheel_key, open_code_store, wheel_download_url
from pipeline.aws import default_region, make_client
from pipeline.config import Settings
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

EXPIRES_TAG = "telemetry-expires-at"
SELF_TERMINATE_GRACE_SECONDS = 3600
WHEEL_URL_SECONDS = 6 * 3600  # the download happens at boot; a slow boot still makes it
VENV = "/opt/telemetry"
# Plain sh, run by cron as root. The last kill time read is kept in a file, so a metadata
# service that does not answer never postpones the shutdown.
EXPIRY_SCRIPT = f"""#!/bin/sh
# Shut this worker down {SELF_TERMINATE_GRACE_SECONDS} s after the kill time in its
# {EXPIRES_TAG} tag (moved by "extend" on the dashboard).
state=${{TELEMETRY_WORKER_STATE:-/var/lib/telemetry-worker}}/expires-at
imds=http://169.254.169.254/latest
token=$(curl -sf -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' $imds/api/token)
tag=$(curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" $imds/meta-data/tags/instance/{EXPIRES_TAG})
case "$tag" in ''|*[!0-9]*) ;; *) echo "$tag" > "$state" ;; esac
expires=$(cat "$state")
[ "$(date +%s)" -ge $((expires + {SELF_TERMINATE_GRACE_SECONDS})) ] && shutdown -h now
exit 0
"""


def _yaml_block(text: str, indent: str = "      ") -> str:
    return "".join(f"{indent}{line}\n" for line in text.splitlines())


def user_data(
    ssh_user: str,
    ssh_public_key: str,
    *,
    wheel_url: str,
    wheel_name: str,
    expires_at: int,
    environment: dict[str, str],
) -> str:
    """The cloud-config of one worker (no secrets: anyone on the instance can read it)."""
    profile = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(environment.items()))
    profile += f'export PATH="{VENV}/bin:$PATH"\n'
    wheel_file = f"/var/lib/telemetry-worker/{wheel_name}"
    install = (
        f"set -e; curl -fsS --retry 8 --retry-delay 5 -o {shlex.quote(wheel_file)} "
        f"{shlex.quote(wheel_url)}; python3 -m venv {VENV}; "
        f"{VENV}/bin/pip install --quiet {shlex.quote(wheel_file)}"
    )
    return (
        "#cloud-config\n"
        "users:\n"
        "  - default\n"
        f"  - name: {ssh_user}\n"
        "    ssh_authorized_keys:\n"
        f"      - {json.dumps(ssh_public_key)}\n"  # a JSON string is a safely quoted YAML scalar
        "packages: [python3-venv, curl]\n"
        "write_files:\n"
        "  - path: /var/lib/telemetry-worker/expires-at\n"
        f"    content: {json.dumps(str(expires_at))}\n"
        "  - path: /usr/local/sbin/telemetry-worker-expiry\n"
        "    permissions: '0755'\n"
        "    content: |\n"
        + _yaml_block(EXPIRY_SCRIPT)
        + "  - path: /etc/cron.d/telemetry-worker-expiry\n"
        "    content: |\n"
        "      */5 * * * * root /usr/local/sbin/telemetry-worker-expiry\n"
        "  - path: /etc/profile.d/telemetry.sh\n"
        "    content: |\n" + _yaml_block(profile) + "runcmd:\n"
        f"  - [sh, -c, {json.dumps(install)}]\n"
    )


def instance_profile_spec(profile: str) -> dict[str, str]:
    """run_instances' IamInstanceProfile for a profile name or ARN."""
    return {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}


class EC2Provider(WorkerProvider):
    name = "ec2"

    def __init__(
        self,
        settings: Settings,
        *,
        image_id: str,
        instance_type: str,
        ssh_user: str,
        instance_profile: str = "",
        endpoint_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.image_id = image_id
        self.instance_profile = instance_profile
        self.instance_type = instance_type
        self.ssh_user = ssh_user
        self.endpoint_url = endpoint_url or None  # TELEMETRY_EC2_ENDPOINT_URL; None: AWS
        self.client = make_client(
            "ec2", endpoint_url=self.endpoint_url, region_name=default_region()
        )

    def _result(self, instance: dict) -> LaunchResult:
        address = instance.get("PublicDnsName") or instance.get("PublicIpAddress") or ""
        running = instance.get("State", {}).get("Name") == "running" and bool(address)
        command = f"ssh {self.ssh_user}@{address}" if address else "(waiting for an address)"
        return LaunchResult(instance["InstanceId"], address, command, running)

    def environment(self) -> dict[str, str]:
        """The settings a login on the instance gets: only URLs it can reach from there."""
        env = {"TELEMETRY_PUBLISHED_URL": self.settings.published_url}
        if self.settings.s3_endpoint_url:
            env["TELEMETRY_S3_ENDPOINT_URL"] = self.settings.s3_endpoint_url
        return env

    def user_data(self, ssh_public_key: str, expires_at: dt.datetime) -> str:
        if not self.settings.published_url.startswith("s3://"):
            raise WorkerProviderError(
                f"TELEMETRY_PUBLISHED_URL must be s3:// for EC2 workers to read the data "
                f"(got {self.settings.published_url!r})"
            )
        try:
            wheel_key = latest_wheel_key(open_code_store(self.settings))
        except WorkerProviderError:
            raise
        except PipelineError as exc:  # a missing bucket, an unreachable store
            raise WorkerProviderError(f"cannot read the code store: {exc}") from exc
        return user_data(
            self.ssh_user,
            ssh_public_key,
            wheel_url=wheel_download_url(self.settings, wheel_key, WHEEL_URL_SECONDS),
            wheel_name=wheel_key.rsplit("/", 1)[-1],
            expires_at=_epoch(expires_at),
            environment=self.environment(),
        )

    def launch(
        self,
        worker_id: int,
        name: str,
        owner: str,
        ssh_public_key: str,
        expires_at: dt.datetime | None = None,
    ) -> LaunchResult:
        if not self.image_id or not self.instance_profile:  # create_app refuses both
            raise WorkerProviderError(
                "TELEMETRY_DASHBOARD_WORKER_EC2_AMI and TELEMETRY_DASHBOARD_WORKER_EC2_INSTANCE_PROFILE "
                "must be set "
                "for the ec2 worker provider"
            )
        expires_at = expires_at or dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)
        try:
            reply = self.client.run_instances(
                ImageId=self.image_id,
                InstanceType=self.instance_type,
                MinCount=1,
                MaxCount=1,
                UserData=self.user_data(ssh_public_key, expires_at),
                IamInstanceProfile=instance_profile_spec(self.instance_profile),
                MetadataOptions={"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
                InstanceInitiatedShutdownBehavior="terminate",
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [
                            {"Key": "Name", "Value": f"telemetry-worker-{name}"},
                            {"Key": "telemetry-worker-id", "Value": str(worker_id)},
                            {"Key": "owner", "Value": owner},
                            {"Key": EXPIRES_TAG, "Value": str(_epoch(expires_at))},
                        ],
                    }
                ],
            )
        except (BotoCoreError, ClientError) as exc:
            raise WorkerProviderError(f"EC2 refused to start the worker: {exc}") from exc
        instance = reply["Instances"][0]
        log.info("worker %s: started instance %s", worker_id, instance["InstanceId"])
        return self._result(instance)

    def refresh(self, instance_id: str) -> LaunchResult | None:
        try:
            reply = self.client.describe_instances(InstanceIds=[instance_id])
        except (BotoCoreError, ClientError) as exc:
            log.warning("cannot describe instance %s: %s", instance_id, exc)
            return None
        for reservation in reply.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                return self._result(instance)
        return None

    def extend(self, instance_id: str, expires_at: dt.datetime) -> None:
        """Move the instance's own kill time (its tag), so it does not shut itself down early."""
        try:
            self.client.create_tags(
                Resources=[instance_id],
                Tags=[{"Key": EXPIRES_TAG, "Value": str(_epoch(expires_at))}],
            )
        except (BotoCoreError, ClientError) as exc:
            raise WorkerProviderError(
                f"EC2 refused to move the kill time of {instance_id}: {exc}"
            ) from exc

    def terminate(self, instance_id: str) -> None:
        try:
            self.client.terminate_instances(InstanceIds=[instance_id])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidInstanceID.NotFound":
                return
            raise WorkerProviderError(f"EC2 refused to terminate {instance_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise WorkerProviderError(
                f"cannot reach EC2 to terminate {instance_id}: {exc}"
            ) from exc
        log.info("terminated instance %s", instance_id)


def _epoch(when: dt.datetime) -> int:
    if when.tzinfo is None:  # the database hands back naive UTC
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())
