"""The EC2 runner: one instance per run, doing the local runner's steps from user-data.

The instance gets no credentials. The service gives it:
- a pre-signed GET URL for the code tarball (TELEMETRY_CODE_URL must be `s3://`),
- a pre-signed POST policy that lets it upload any key under the run's private staging prefix
  `_staging/<job_name>/<run_id>/` of the code bucket (never the public store), used with curl
  for the output files, the log and the result.
User-data (bash): download + extract the tarball (checked by scheduler.tarball when it was
stored: plain files and directories only; GNU tar extracts it without owners),
run the command like the local runner does (see RUN_COMMAND_FUNCTION): `bash -c` with stdin
from /dev/null, in a clean environment (`env -i`, only the variables listed below), in a process
group of its own (coreutils `timeout`'s); at the timeout the whole group gets SIGTERM, and
SIGKILL after `kill_grace_seconds`; whatever the command leaves running is killed when it
ends, before anything is uploaded. Then upload every regular file of the output directory to
`<staging>/data/<relative path>`, the log to `<staging>/run.log` and the result ("exit=N") to
`<staging>/result`, then `shutdown -h now`; InstanceInitiatedShutdownBehavior=terminate makes
that a termination. The instance checks nothing: when it is gone, the service runs the one
publish step (scheduler.publish, the same as for local runs) on the staged files, copies
them to `<job>/data/` of the public store only if every one passes, publishes the log
through the same guard, and deletes the staging prefix.

The command's environment on the instance (nothing else from cloud-init's is inherited):
  JOB_NAME, RUN_ID, OUTPUT_DIR (absolute), HOME (the job directory), TMPDIR (a private temp
  dir), LANG=C.UTF-8, PATH=/usr/local/bin:/usr/bin:/bin, and TELEMETRY_PUBLISHED_URL,
  TELEMETRY_PUBLIC_URL, TELEMETRY_HG_BASE_URL, TELEMETRY_S3_ENDPOINT_URL when set and not
  `file://` (a place on the service's machine). No credentials and no secrets: the user-data
  can be read by anyone who may describe the instance, and by the job itself.
A process that leaves the group on purpose (`setsid`) is not followed (the local runner's
PID namespace has no equivalent here); the instance's shutdown ends it, and whatever it does
to the output meanwhile is judged by the service's guard on the staged copies.
The service polls the instance; when it is gone it reads the staged result. At
timeout + `ec2_boot_allowance_seconds` it terminates the instance itself and records why.
Instances are tagged JobName, RunId, Owner.
"""

from __future__ import annotations

import logging
import math
import shlex
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.aws import default_region, make_client
from pipeline.config import Settings
from pipeline.errors import ObjectNotFound, StoreError
from scheduler.config import SchedulerConfig
from scheduler.errors import RunnerError
from scheduler.models import RunState
from scheduler.publish import (
    check_staged,
    guard_scanner,
    publish_staged,
    stage_store,
    tail,
)
from scheduler.runners.base import LostRun, Runner, RunOutcome, RunRequest

log = logging.getLogger(__name__)

GONE_STATES = {"shutting-down", "terminated", "stopped", "stopping"}
PASSED_SETTINGS = ("published_url", "public_url", "hg_base_url", "s3_endpoint_url")
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"
STAGING = "_staging"

# Plain bash (no format fields), also executed on its own by the tests.
RUN_COMMAND_FUNCTION = r"""# run_command SECONDS GRACE COMMAND: run COMMAND with `bash -c` in the current directory,
# stdin from /dev/null, in a clean environment (only the JOB_ENV entries) and in a process
# group of its own (timeout's). At SECONDS the whole group gets SIGTERM, and SIGKILL GRACE
# seconds later; when the command ends, by itself or not, whatever it left running in the
# group is killed too. Returns the command's status (124, or 137, when it timed out).
run_command() {
  local pidfile status pgid waited=0
  pidfile=$(mktemp) || return 125
  # `exec` keeps the pid: timeout's, which timeout makes the id of the job's process group.
  bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" \
    timeout --kill-after="$2" "$1" env -i "${JOB_ENV[@]}" bash -c "$3" </dev/null
  status=$?
  pgid=$(cat "$pidfile")
  rm -f "$pidfile"
  if [ -n "$pgid" ]; then
    if [ "$status" -eq 124 ]; then
      # timeout stops waiting when bash dies; children ignoring SIGTERM get the grace too.
      while kill -0 -- "-$pgid" 2>/dev/null && [ "$waited" -lt "$2" ]; do
        sleep 1
        waited=$((waited + 1))
      done
    fi
    kill -KILL -- "-$pgid" 2>/dev/null
  fi
  return "$status"
}
"""

USER_DATA_TEMPLATE = r"""#!/bin/bash
# telemetry-pipeline scheduler: run {run_id} of job {job_name} (generated; do not edit)
set -u
JOB_NAME={job_name_q}
RUN_ID={run_id}
OUTPUT_REL={output_dir_q}
TIMEOUT_SECONDS={timeout_seconds}
KILL_GRACE_SECONDS={kill_grace_seconds}
TARBALL_URL={tarball_url_q}
POST_URL={post_url_q}
POST_ARGS=({post_args})
KEY_PREFIX={key_prefix_q}
WORK=/var/tmp/telemetry-run-$RUN_ID
LOG=$WORK/run.log
mkdir -p "$WORK/job" "$WORK/tmp"
exec >>"$LOG" 2>&1
{run_command_function}finish() {{
  upload_file "result" "$WORK/result" || true
  upload_file "run.log" "$LOG" || true
  shutdown -h now
}}
upload_file() {{
  curl -sS --fail --retry 3 "${{POST_ARGS[@]}}" -F "key=$KEY_PREFIX$1" -F "file=@$2" "$POST_URL"
}}
echo "exit=setup-failed" > "$WORK/result"
trap finish EXIT
curl -sS --fail --retry 3 -o "$WORK/code.tar.gz" "$TARBALL_URL" || {{ echo "exit=download-failed" > "$WORK/result"; exit 1; }}
tar xzf "$WORK/code.tar.gz" -C "$WORK/job" --no-same-owner --no-same-permissions || {{ echo "exit=corrupt-tarball" > "$WORK/result"; exit 1; }}
cd "$WORK/job"
OUTPUT_DIR="$WORK/job/$OUTPUT_REL"
JOB_ENV=(
  "JOB_NAME=$JOB_NAME" "RUN_ID=$RUN_ID" "OUTPUT_DIR=$OUTPUT_DIR" "HOME=$WORK/job"
  "TMPDIR=$WORK/tmp" "LANG=C.UTF-8" {job_path_q}{passed_env}
)
run_command "$TIMEOUT_SECONDS" "$KILL_GRACE_SECONDS" {command_q}
status=$?
echo "exit=$status" > "$WORK/result"
if [ "$status" -ne 0 ]; then exit 0; fi
if [ ! -d "$OUTPUT_DIR" ]; then echo "exit=no-output-dir" > "$WORK/result"; exit 0; fi
while IFS= read -r -d '' f; do
  rel=${{f#$OUTPUT_DIR/}}
  upload_file "data/$rel" "$f" || {{ echo "exit=upload-failed" > "$WORK/result"; exit 0; }}
done < <(find "$OUTPUT_DIR" -type f -print0)
"""


def _bucket_prefix(url: str, setting: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise RunnerError(
            f"{setting} must be an s3:// URL for the ec2 runner (got {url!r}); instances cannot reach a local directory"
        )
    return parsed.netloc, parsed.path.strip("/")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


def staging_prefix(request: RunRequest) -> str:
    """Where a run's instance uploads, in the (private) code store: `_staging/<job>/<run>/`
    (tarball keys are `<job>/<hash>.tar.gz`: two components, so the two never meet)."""
    return f"{STAGING}/{request.job_name}/{int(request.run_id)}/"


def render_user_data(
    *,
    request: RunRequest,
    tarball_url: str,
    post_url: str,
    post_fields: dict,
    key_prefix: str = "",
    kill_grace_seconds: float = 30.0,
    job_environment: dict[str, str] | None = None,
) -> str:
    """The instance's bash script; every value from the job or AWS is shell-quoted.

    `job_environment` holds the settings passed to the command besides the per-run variables.
    """
    return USER_DATA_TEMPLATE.format(
        run_command_function=RUN_COMMAND_FUNCTION,
        kill_grace_seconds=max(1, math.ceil(kill_grace_seconds)),
        job_path_q=shlex.quote(f"PATH={JOB_PATH}"),
        passed_env="".join(
            " " + shlex.quote(f"{name}={value}") for name, value in (job_environment or {}).items()
        ),
        run_id=int(request.run_id),
        job_name=request.job_name,
        job_name_q=shlex.quote(request.job_name),
        output_dir_q=shlex.quote(request.output_dir),
        timeout_seconds=int(request.timeout_seconds),
        tarball_url_q=shlex.quote(tarball_url),
        post_url_q=shlex.quote(post_url),
        post_args=" ".join(
            f"-F {shlex.quote(f'{name}={value}')}" for name, value in post_fields.items()
        ),
        key_prefix_q=shlex.quote(key_prefix),
        command_q=shlex.quote(request.command),
    )


class EC2Runner(Runner):
    name = "ec2"
    recorded_fields = ("instance_id",)

    def __init__(self, settings: Settings, config: SchedulerConfig) -> None:
        self.settings = settings
        self.config = config
        region = config.ec2_region or default_region()
        self.ec2 = make_client("ec2", endpoint_url=settings.ec2_endpoint_url, region_name=region)
        self.s3 = make_client("s3", endpoint_url=settings.s3_endpoint_url, region_name=region)

    # -- pieces (also used by tests) ------------------------------------------------------
    def user_data(self, request: RunRequest) -> str:
        code_bucket, code_prefix = _bucket_prefix(self.settings.code_url, "TELEMETRY_CODE_URL")
        _bucket_prefix(self.settings.public_url, "TELEMETRY_PUBLIC_URL")
        expires = int(request.timeout_seconds + self.config.ec2_boot_allowance_seconds + 3600)
        tarball_url = self.s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": code_bucket, "Key": _join(code_prefix, request.tarball_key)},
            ExpiresIn=expires,
        )
        run_prefix = _join(code_prefix, staging_prefix(request))
        post = self.s3.generate_presigned_post(
            code_bucket,
            run_prefix + "${filename}",
            Conditions=[
                ["starts-with", "$key", run_prefix],
                ["content-length-range", 0, self.config.publish_max_file_bytes],
            ],
            ExpiresIn=expires,
        )
        # The script supplies the key itself (relative to the run's staging prefix).
        fields = {k: v for k, v in post["fields"].items() if k != "key"}
        return render_user_data(
            request=request,
            tarball_url=tarball_url,
            post_url=post["url"],
            post_fields=fields,
            key_prefix=_join(code_prefix, staging_prefix(request)),
            kill_grace_seconds=self.config.kill_grace_seconds,
            job_environment=self.job_environment(),
        )

    def job_environment(self) -> dict[str, str]:
        """The settings the command gets on the instance: URLs it can reach from there."""
        env = {}
        for name in PASSED_SETTINGS:
            value = getattr(self.settings, name)
            if value and not str(value).startswith("file:"):
                env[f"TELEMETRY_{name.upper()}"] = str(value)
        return env

    def launch(self, request: RunRequest) -> str:
        if not self.config.ec2_image_id:
            raise RunnerError(
                "TELEMETRY_SCHEDULER_EC2_IMAGE_ID is not set: the ec2 runner needs an AMI (with bash, curl, python3)"
            )
        params = dict(
            ImageId=self.config.ec2_image_id,
            InstanceType=self.config.ec2_instance_type,
            MinCount=1,
            MaxCount=1,
            UserData=self.user_data(request),
            InstanceInitiatedShutdownBehavior="terminate",
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "JobName", "Value": request.job_name},
                        {"Key": "RunId", "Value": str(request.run_id)},
                        {"Key": "Owner", "Value": request.owner},
                    ],
                }
            ],
        )
        if self.config.ec2_subnet_id:
            params["SubnetId"] = self.config.ec2_subnet_id
        if self.config.ec2_security_group_ids:
            params["SecurityGroupIds"] = [
                g.strip() for g in self.config.ec2_security_group_ids.split(",") if g.strip()
            ]
        if self.config.ec2_key_name:
            params["KeyName"] = self.config.ec2_key_name
        try:
            response = self.ec2.run_instances(**params)
        except (ClientError, BotoCoreError) as exc:
            raise RunnerError(f"run_instances failed: {exc}") from exc
        return response["Instances"][0]["InstanceId"]

    def instance_state(self, instance_id: str) -> str:
        response = self.ec2.describe_instances(InstanceIds=[instance_id])
        return response["Reservations"][0]["Instances"][0]["State"]["Name"]

    def terminate(self, instance_id: str) -> None:
        self.ec2.terminate_instances(InstanceIds=[instance_id])

    def abandon(self, lost: LostRun) -> None:
        """A lost run's instance may still be running (and billing): terminate it."""
        instance_id = lost.recorded.get("instance_id")
        if instance_id:
            log.warning("terminating instance %s of a lost run", instance_id)
            self.terminate(instance_id)

    def _discard_staging(self, request: RunRequest) -> None:
        """Nothing a killed run staged is ever published."""
        try:
            code, _ = self._stores()
            for info in list(code.list(staging_prefix(request))):
                code.delete(info.key)
        except (StoreError, OSError, BotoCoreError, ClientError) as exc:
            log.warning("run %s: could not clean its staging prefix: %s", request.run_id, exc)

    def result(self, request: RunRequest, instance_id: str) -> RunOutcome:
        """After the instance went away: read its staged result and log, run the publish step
        on its staged outputs, publish the log, and delete the staging prefix."""
        code, public = self._stores()
        prefix = staging_prefix(request)
        try:
            with tempfile.TemporaryDirectory(prefix="telemetry-publish-") as tmp:
                return self._finish(request, instance_id, code, public, prefix, Path(tmp))
        finally:
            for info in list(code.list(prefix)):
                code.delete(info.key)

    def _finish(self, request, instance_id, code, public, prefix, tmp: Path) -> RunOutcome:
        log_path = tmp / "run.log"
        try:
            code.get_file(prefix + "run.log", str(log_path))
        except ObjectNotFound:
            log_path.write_bytes(b"")
        try:
            raw = code.get(prefix + "result")
        except ObjectNotFound:
            raw = None
        notes: list[str] = []
        outcome = self._interpret(request, instance_id, raw, code, public, prefix, tmp, notes)
        if notes:
            with open(log_path, "ab") as handle:
                handle.write("".join(f"[scheduler] {note}\n" for note in notes).encode())
        outcome.log_key = self._publish_log(request, log_path, notes, public)
        outcome.instance_id = instance_id
        outcome.log_tail = tail(log_path, self.config.mail_log_lines)
        return outcome

    def _interpret(self, request, instance_id, raw, code, public, prefix, tmp, notes):
        if raw is None:
            return RunOutcome(
                RunState.failed, f"instance {instance_id} ended without reporting a result"
            )
        lines = raw.decode("utf-8", "replace").splitlines()
        status = lines[0].partition("=")[2] if lines else ""
        reasons = {
            "setup-failed": "the instance could not prepare the run",
            "download-failed": "the instance could not download the tarball",
            "corrupt-tarball": "the tarball could not be extracted",
            "no-output-dir": f"output directory {request.output_dir!r} does not exist after the command finished",
            "upload-failed": "the instance could not upload its output",
        }
        if status in reasons:
            return RunOutcome(RunState.failed, reasons[status])
        if status == "124" or status == "137":
            return RunOutcome(
                RunState.timed_out,
                f"timed out after {request.timeout_minutes} minute(s) on the instance",
                exit_code=int(status),
            )
        if status.lstrip("-").isdigit() and int(status) != 0:
            return RunOutcome(
                RunState.failed, f"command exited with status {status}", exit_code=int(status)
            )
        if status != "0":
            return RunOutcome(
                RunState.failed, f"unexpected result {status!r} from instance {instance_id}"
            )
        try:
            staged, refusals = stage_store(
                code, prefix + "data/", tmp / "staging", self.config.publish_max_file_bytes
            )
            if not refusals:
                refusals = check_staged(staged, guard_scanner(self.settings, self.config))
            if refusals:
                notes.extend(f"not publishing {r.path}: {r.reason}" for r in refusals)
                first = refusals[0]
                reason = f"published output guard refused {len(refusals)} file(s) ({first.path}: {first.reason}); nothing was published"
                notes.append(reason)
                return RunOutcome(RunState.failed, reason, exit_code=0)
            keys = publish_staged(public, request.job_name, staged)
        except (StoreError, OSError) as exc:
            notes.append(f"publishing failed: {exc}")
            return RunOutcome(RunState.failed, f"publishing failed: {exc}", exit_code=0)
        notes.extend(f"published {key}" for key in keys)
        return RunOutcome(
            RunState.succeeded,
            f"succeeded; published {len(keys)} file(s)",
            exit_code=0,
            published_files=keys,
        )

    # -- the run ----------------------------------------------------------------------------
    def execute(
        self, request: RunRequest, on_started: Callable[[dict], None] | None = None
    ) -> RunOutcome:
        try:
            instance_id = self.launch(request)
        except RunnerError as exc:
            return RunOutcome(RunState.failed, str(exc))
        log.info("run %s: launched instance %s", request.run_id, instance_id)
        if on_started:
            on_started({"instance_id": instance_id})
        deadline = (
            time.monotonic() + request.timeout_seconds + self.config.ec2_boot_allowance_seconds
        )
        while True:
            try:
                state = self.instance_state(instance_id)
            except (ClientError, BotoCoreError, IndexError, KeyError) as exc:
                log.warning("run %s: describe_instances failed: %s", request.run_id, exc)
                state = "unknown"
            if state in GONE_STATES:
                return self.result(request, instance_id)
            if request.cancel.is_set() or time.monotonic() >= deadline:
                timed_out = not request.cancel.is_set()
                self.terminate(instance_id)
                self._discard_staging(request)
                if timed_out:
                    reason = (
                        f"timed out: instance {instance_id} still running after {request.timeout_minutes} minute(s) "
                        f"plus {self.config.ec2_boot_allowance_seconds:.0f}s boot allowance; the service terminated it"
                    )
                    return RunOutcome(RunState.timed_out, reason, instance_id=instance_id)
                return RunOutcome(
                    RunState.cancelled,
                    f"cancelled; the service terminated instance {instance_id}",
                    instance_id=instance_id,
                )
            request.cancel.wait(self.config.ec2_poll_seconds)
