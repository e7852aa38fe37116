"""Workers on EC2: one instance per worker, the user's key installed by cloud-init.

The instance shuts itself down (and, with `terminate` as its shutdown behaviour, is
terminated) if it outlives its kill time by a day, as a backstop for a dashboard that is down.

Options (Flask config, from `DASHBOARD_*` variables): WORKER_EC2_AMI (required, no default),
WORKER_EC2_INSTANCE_TYPE, WORKER_EC2_SSH_USER, WORKER_EC2_ENDPOINT_URL (unset: AWS's own EC2
endpoint; the S3 endpoint is never used for EC2). The region is boto3's own
(AWS_DEFAULT_REGION, else the profile in ~/.aws/config), us-east-1 when it resolves none.
"""

from __future__ import annotations

import json
import logging

from botocore.exceptions import BotoCoreError, ClientError

from dashboard.workers.base import LaunchResult, WorkerProvider, WorkerProviderError
from pipeline.aws import default_region, make_client
from pipeline.config import Settings

log = logging.getLogger(__name__)


def user_data(ssh_user: str, ssh_public_key: str) -> str:
    return (
        "#cloud-config\n"
        "users:\n"
        "  - default\n"
        f"  - name: {ssh_user}\n"
        "    ssh_authorized_keys:\n"
        f"      - {json.dumps(ssh_public_key)}\n"  # a JSON string is a safely quoted YAML scalar
        "runcmd:\n"
        "  - [shutdown, -h, '+2880']\n"
    )


class EC2Provider(WorkerProvider):
    name = "ec2"

    def __init__(
        self,
        settings: Settings,
        *,
        image_id: str,
        instance_type: str,
        ssh_user: str,
        endpoint_url: str | None = None,
    ) -> None:
        self.image_id = image_id
        self.instance_type = instance_type
        self.ssh_user = ssh_user
        self.endpoint_url = endpoint_url or None  # DASHBOARD_WORKER_EC2_ENDPOINT_URL; None: AWS
        self.client = make_client(
            "ec2", endpoint_url=self.endpoint_url, region_name=default_region()
        )

    def _result(self, instance: dict) -> LaunchResult:
        address = instance.get("PublicDnsName") or instance.get("PublicIpAddress") or ""
        running = instance.get("State", {}).get("Name") == "running" and bool(address)
        command = f"ssh {self.ssh_user}@{address}" if address else "(waiting for an address)"
        return LaunchResult(instance["InstanceId"], address, command, running)

    def launch(self, worker_id: int, name: str, owner: str, ssh_public_key: str) -> LaunchResult:
        if not self.image_id:  # create_app refuses this; a provider made elsewhere may not
            raise WorkerProviderError(
                "DASHBOARD_WORKER_EC2_AMI is not set: the ec2 worker provider needs an AMI"
            )
        try:
            reply = self.client.run_instances(
                ImageId=self.image_id,
                InstanceType=self.instance_type,
                MinCount=1,
                MaxCount=1,
                UserData=user_data(self.ssh_user, ssh_public_key),
                InstanceInitiatedShutdownBehavior="terminate",
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [
                            {"Key": "Name", "Value": f"telemetry-worker-{name}"},
                            {"Key": "telemetry-worker-id", "Value": str(worker_id)},
                            {"Key": "owner", "Value": owner},
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
