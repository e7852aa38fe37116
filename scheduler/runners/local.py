"""The local runner: run a job's command in a fresh directory on this machine.

Steps: fetch the tarball from `TELEMETRY_CODE_URL`, extract it safely into
`<work_dir>/<run_id>/job`, run `bash -c COMMAND` there in a new session (its own process
group) with a clean environment, stdout+stderr going to `<work_dir>/<run_id>/run.log`,
kill the whole process group at the timeout (SIGTERM, then SIGKILL after a grace period),
then publish the output directory and the log (see scheduler.publish).

Environment given to the command (nothing else is inherited):
  TELEMETRY_DATA_DIR, TELEMETRY_PUBLISHED_URL, TELEMETRY_PUBLIC_URL, TELEMETRY_HISTOGRAM_CACHE,
  TELEMETRY_HG_BASE_URL, TELEMETRY_SCHEMA_PATH, TELEMETRY_S3_ENDPOINT_URL (when set),
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_DEFAULT_REGION /
  AWS_REGION (when set, so jobs can read an S3 published store),
  JOB_NAME, RUN_ID, OUTPUT_DIR (absolute path of the output directory),
  HOME (the job directory), TMPDIR (a private temp dir), LANG=C.UTF-8,
  PATH = the scheduler's Python environment bin dir + /usr/local/bin:/usr/bin:/bin
  (so `python -m mapreduce.job ...` works).
Secrets (TELEMETRY_SECRET_KEY, TELEMETRY_SMTP_URL, the database URL) are never passed.
The local runner isolates runs from each other, not from the machine: it is not a sandbox.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import ObjectNotFound, StoreError
from pipeline.stores import open_store
from scheduler.config import SchedulerConfig
from scheduler.errors import TarballError
from scheduler.models import RunState
from scheduler.publish import check_outputs, output_files, publish_log, publish_outputs, tail
from scheduler.runners.base import Runner, RunOutcome, RunRequest
from scheduler.tarball import safe_extract

log = logging.getLogger(__name__)

PASSED_SETTINGS = (
    "data_dir",
    "published_url",
    "public_url",
    "histogram_cache",
    "hg_base_url",
    "schema_path",
    "s3_endpoint_url",
)
PASSED_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


def job_environment(
    settings: Settings, request: RunRequest, job_dir: Path, output_dir: Path, tmp_dir: Path
) -> dict[str, str]:
    """The complete environment of a job's command (see the module docstring)."""
    env = {
        "TELEMETRY_" + name.upper(): str(getattr(settings, name))
        for name in PASSED_SETTINGS
        if getattr(settings, name)
    }
    env.update({name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)})
    env.update(
        JOB_NAME=request.job_name,
        RUN_ID=str(request.run_id),
        OUTPUT_DIR=str(output_dir),
        HOME=str(job_dir),
        TMPDIR=str(tmp_dir),
        LANG="C.UTF-8",
        PATH=os.pathsep.join(
            [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
    )
    return env


def kill_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - only a group leader we do not own
        return False


class LocalRunner(Runner):
    name = "local"

    def __init__(self, settings: Settings, config: SchedulerConfig) -> None:
        self.settings = settings
        self.config = config
        self.work_root = Path(config.work_dir or Path(settings.data_dir) / "runs")

    def _stores(self):
        code = open_store(
            self.settings.code_url,
            setting="TELEMETRY_CODE_URL",
            endpoint_url=self.settings.s3_endpoint_url,
        )
        public = open_store(
            self.settings.public_url,
            setting="TELEMETRY_PUBLIC_URL",
            endpoint_url=self.settings.s3_endpoint_url,
        )
        return code, public

    def execute(
        self, request: RunRequest, on_started: Callable[[dict], None] | None = None
    ) -> RunOutcome:
        run_dir = self.work_root / str(request.run_id)
        shutil.rmtree(run_dir, ignore_errors=True)
        job_dir, tmp_dir = run_dir / "job", run_dir / "tmp"
        job_dir.mkdir(parents=True)
        tmp_dir.mkdir()
        log_path = run_dir / "run.log"
        try:
            with open(log_path, "ab", buffering=0) as log_file:
                outcome = self._execute(request, job_dir, tmp_dir, log_file)
            try:
                _, public = self._stores()
                outcome.log_key = publish_log(public, request.job_name, request.run_id, log_path)
            except (StoreError, OSError) as exc:
                log.error("run %s: could not publish the log: %s", request.run_id, exc)
            outcome.log_tail = tail(log_path, self.config.mail_log_lines)
            return outcome
        finally:
            if not self.config.keep_work_dirs:
                shutil.rmtree(run_dir, ignore_errors=True)

    def _note(self, log_file, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        log_file.write(f"[scheduler {stamp}] {message}\n".encode())

    def _execute(self, request: RunRequest, job_dir: Path, tmp_dir: Path, log_file) -> RunOutcome:
        run_id = request.run_id
        try:
            code, public = self._stores()
            data = code.get(request.tarball_key)
            if len(data) > self.config.tarball_max_bytes:
                raise TarballError(
                    f"tarball is {len(data)} bytes, over the limit of {self.config.tarball_max_bytes}"
                )
            safe_extract(
                data,
                job_dir,
                max_bytes=self.config.extract_max_bytes,
                max_members=self.config.extract_max_members,
            )
        except ObjectNotFound:
            reason = f"code tarball {request.tarball_key!r} is missing from the code store; upload it again"
            self._note(log_file, reason)
            return RunOutcome(RunState.failed, reason)
        except (TarballError, StoreError) as exc:
            reason = f"could not prepare the code: {exc}"
            self._note(log_file, reason)
            return RunOutcome(RunState.failed, reason)

        output_dir = (job_dir / request.output_dir).resolve()
        env = job_environment(self.settings, request, job_dir, output_dir, tmp_dir)
        self._note(log_file, f"run {run_id} of job {request.job_name}: $ {request.command}")
        try:
            proc = subprocess.Popen(
                ["bash", "-c", request.command],
                cwd=job_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            reason = f"could not start bash: {exc}"
            self._note(log_file, reason)
            return RunOutcome(RunState.failed, reason)
        log.info(
            "run %s: started pid %s (timeout %.0fs)", run_id, proc.pid, request.timeout_seconds
        )
        ended = self._wait(proc, request)
        # Whatever happened, no process of this run may outlive it (background children too).
        kill_group(proc.pid, signal.SIGKILL)
        if ended == "timeout":
            reason = (
                f"timed out after {request.timeout_minutes} minute(s); the process group was killed"
            )
            self._note(log_file, reason)
            return RunOutcome(RunState.timed_out, reason, exit_code=proc.returncode)
        if ended == "cancel":
            reason = "cancelled; the process group was killed"
            self._note(log_file, reason)
            return RunOutcome(RunState.cancelled, reason, exit_code=proc.returncode)
        code_ = proc.returncode
        if code_ != 0:
            reason = (
                f"command exited with status {code_}"
                if code_ > 0
                else f"command was killed by signal {-code_}"
            )
            self._note(log_file, reason)
            return RunOutcome(RunState.failed, reason, exit_code=code_)
        if not output_dir.is_dir():
            reason = f"output directory {request.output_dir!r} does not exist after the command finished; write results there"
            self._note(log_file, reason)
            return RunOutcome(RunState.failed, reason, exit_code=0)
        if not (output_dir == job_dir.resolve() or job_dir.resolve() in output_dir.parents):
            reason = f"output directory {request.output_dir!r} resolves outside the job directory"
            self._note(log_file, reason)
            return RunOutcome(RunState.failed, reason, exit_code=0)
        files = output_files(output_dir)
        refusals = check_outputs(files, self.config.publish_max_file_bytes)
        if refusals:
            for refusal in refusals:
                self._note(log_file, f"not publishing {refusal.path}: {refusal.reason}")
            reason = f"published output guard refused {len(refusals)} file(s) ({refusals[0].path}: {refusals[0].reason}); nothing was published"
            self._note(log_file, reason)
            return RunOutcome(RunState.failed, reason, exit_code=0)
        try:
            keys = publish_outputs(public, request.job_name, files)
        except (StoreError, OSError) as exc:
            reason = f"publishing failed: {exc}"
            self._note(log_file, reason)
            return RunOutcome(RunState.failed, reason, exit_code=0)
        for key in keys:
            self._note(log_file, f"published {key}")
        reason = f"succeeded; published {len(keys)} file(s)"
        self._note(log_file, reason)
        return RunOutcome(RunState.succeeded, reason, exit_code=0, published_files=keys)

    def _wait(self, proc: subprocess.Popen, request: RunRequest) -> str:
        """Wait for exit, the timeout or a cancel; returns "exit", "timeout" or "cancel"."""
        deadline = time.monotonic() + request.timeout_seconds
        ended = "exit"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ended = "timeout"
                break
            if request.cancel.wait(min(0.2, remaining)):
                ended = "cancel"
                break
            if proc.poll() is not None:
                return "exit"
        log.warning("run %s: %s; terminating process group %s", request.run_id, ended, proc.pid)
        kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.config.kill_grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        # Children that ignore SIGTERM (or a leader that exited early) get SIGKILL after the grace.
        grace_end = time.monotonic() + self.config.kill_grace_seconds
        while kill_group(proc.pid, 0) and time.monotonic() < grace_end:
            time.sleep(0.1)
        kill_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
            log.error("run %s: pid %s survived SIGKILL", request.run_id, proc.pid)
        return ended
