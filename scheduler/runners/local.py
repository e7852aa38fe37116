"""The local runner: run a job's command in a sandbox on this machine.

Steps: fetch the tarball from `TELEMETRY_CODE_URL`, extract it safely into
`<work_dir>/<run_id>/job`, run `bash -c COMMAND` there in a bubblewrap sandbox
(scheduler.sandbox) with stdout+stderr going to `<work_dir>/<run_id>/run.log`; at the
timeout (or a cancel) every process of the run gets SIGTERM, then SIGKILL after a grace
period; when the command ends, the sandbox's PID namespace is torn down, so nothing it started
(daemonised or not) outlives the run. Then the publish step (scheduler.publish) guards the
output and copies it to the public store, outside the sandbox.

What the command sees (sandboxed): the job directory at /job (read-write; HOME and the
working directory), a private /tmp, the published store read-only at /data/published when
it is a `file://` store, the job's own earlier public output (`public/<job>/`, which holds its
published `data/` and any rerun requests) read-only at /data/public/<job>, the revision cache of
Histograms.json files read-only at /data/histogram-cache, the system directories and the project's
Python environment read-only; nothing else of the data directory. It runs as uid/gid 65534, without network
unless TELEMETRY_SCHEDULER_SANDBOX_NETWORK is set, under the TELEMETRY_SCHEDULER_SANDBOX_*
limits.

Environment given to the command (nothing else is inherited):
  TELEMETRY_PUBLISHED_URL (file:///data/published for a file:// store, else the URL),
  TELEMETRY_HG_BASE_URL, TELEMETRY_SCHEMA_PATH, TELEMETRY_S3_ENDPOINT_URL (when set),
  TELEMETRY_PUBLIC_URL (file:///data/public: the job's own earlier output) and
  TELEMETRY_HISTOGRAM_CACHE (/data/histogram-cache) when those are local directories,
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_DEFAULT_REGION /
  AWS_REGION only from TELEMETRY_JOB_AWS_* (never the service's own credentials),
  JOB_NAME, RUN_ID, OUTPUT_DIR (absolute path of the output directory),
  HOME (the job directory), TMPDIR (the private temp dir), LANG=C.UTF-8,
  PATH = the project's Python environment bin dir + /usr/local/bin:/usr/bin:/bin
  (so `python -m mapreduce.job ...` works).
Never: TELEMETRY_DATA_DIR, the secret key, SMTP or database URLs, the service's AWS_*.

Fail closed: where no sandbox can be set up (bubblewrap missing, user namespaces disabled),
runs of jobs whose owner is not a dashboard admin are refused with the reason on the run,
unless the operator sets TELEMETRY_SCHEDULER_UNSAFE_NO_SANDBOX (the command then runs
unsandboxed, with the service's rights, in a process group of its own).
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from pipeline.config import Settings
from pipeline.errors import ObjectNotFound, StoreError
from scheduler import sandbox
from scheduler.config import SchedulerConfig
from scheduler.errors import TarballError
from scheduler.models import RunState
from scheduler.publish import (
    OutputMissing,
    check_staged,
    guard_scanner,
    publish_staged,
    stage_directory,
    tail,
)
from scheduler.runners.base import Runner, RunOutcome, RunRequest
from scheduler.tarball import safe_extract

log = logging.getLogger(__name__)

JOB_AWS = (
    ("job_aws_access_key_id", "AWS_ACCESS_KEY_ID"),
    ("job_aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("job_aws_session_token", "AWS_SESSION_TOKEN"),
    ("job_aws_region", "AWS_DEFAULT_REGION"),
    ("job_aws_region", "AWS_REGION"),
)
SCHEMA_TARGET = "/data/telemetry_schema.json"


def _local_root(url: str) -> str | None:
    """The directory of a `file://` store URL (None for other schemes)."""
    parsed = urlparse(url or "")
    if parsed.scheme != "file":
        return None
    return os.path.abspath(parsed.path if not parsed.netloc else parsed.netloc + parsed.path)


def job_environment(
    settings: Settings,
    request: RunRequest,
    *,
    home: str,
    tmp: str,
    published_url: str,
    schema_path: str,
    public_url: str = "",
    histogram_cache: str = "",
) -> dict[str, str]:
    """The complete environment of a job's command (see the module docstring); paths are as
    the command sees them."""
    env = {
        "TELEMETRY_PUBLISHED_URL": published_url,
        "TELEMETRY_PUBLIC_URL": public_url,
        "TELEMETRY_HISTOGRAM_CACHE": histogram_cache,
        "TELEMETRY_HG_BASE_URL": settings.hg_base_url,
        "TELEMETRY_SCHEMA_PATH": schema_path,
        "TELEMETRY_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
    }
    env.update({name: getattr(settings, field) for field, name in JOB_AWS})
    env = {name: str(value) for name, value in env.items() if value}
    env.update(
        JOB_NAME=request.job_name,
        RUN_ID=str(request.run_id),
        OUTPUT_DIR=posixpath.join(home, posixpath.normpath(request.output_dir)),
        HOME=home,
        TMPDIR=tmp,
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

    def sandbox_problem(self) -> str | None:
        """Why no sandbox can be set up here (None: it can)."""
        return sandbox.available(self.config.sandbox_bwrap)

    def execute(
        self, request: RunRequest, on_started: Callable[[dict], None] | None = None
    ) -> RunOutcome:
        run_dir = self.work_root / str(request.run_id)
        shutil.rmtree(run_dir, ignore_errors=True)
        job_dir, tmp_dir = run_dir / "job", run_dir / "tmp"
        job_dir.mkdir(parents=True)
        tmp_dir.mkdir()
        log_path = run_dir / "run.log"
        notes: list[str] = []
        try:
            with open(log_path, "ab", buffering=0) as log_file:
                outcome = self._execute(request, run_dir, log_file, notes)
            outcome.log_key = self._publish_log(request, log_path, notes)
            outcome.log_tail = tail(log_path, self.config.mail_log_lines)
            return outcome
        finally:
            if not self.config.keep_work_dirs:
                shutil.rmtree(run_dir, ignore_errors=True)

    def _note(self, log_file, notes: list[str], message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        notes.append(message)
        log_file.write(f"[scheduler {stamp}] {message}\n".encode())

    def _finish(self, log_file, notes, state, reason, **fields) -> RunOutcome:
        self._note(log_file, notes, reason)
        return RunOutcome(state, reason, **fields)

    def _execute(self, request: RunRequest, run_dir: Path, log_file, notes) -> RunOutcome:
        run_id = request.run_id
        job_dir, tmp_dir = run_dir / "job", run_dir / "tmp"
        note = lambda message: self._note(log_file, notes, message)  # noqa: E731
        problem = self.sandbox_problem()
        if problem:
            if not (self.config.unsafe_no_sandbox or request.owner_is_admin):
                return self._finish(
                    log_file,
                    notes,
                    RunState.failed,
                    f"refused: no sandbox can be set up on this machine ({problem}); the "
                    "operator must install bubblewrap (make setup) or allow unsandboxed runs "
                    "with TELEMETRY_SCHEDULER_UNSAFE_NO_SANDBOX=1 (unsafe)",
                )
            why = "the owner is an admin" if request.owner_is_admin else "UNSAFE_NO_SANDBOX is set"
            note(f"WARNING: running WITHOUT a sandbox ({why}; {problem})")
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
            return self._finish(log_file, notes, RunState.failed, reason)
        except (TarballError, StoreError) as exc:
            return self._finish(
                log_file, notes, RunState.failed, f"could not prepare the code: {exc}"
            )

        note(f"run {run_id} of job {request.job_name}: $ {request.command}")
        try:
            proc = (
                self._start_unsandboxed(request, job_dir, tmp_dir, log_file)
                if problem
                else self._start_sandboxed(request, job_dir, tmp_dir, log_file, note)
            )
        except OSError as exc:
            return self._finish(log_file, notes, RunState.failed, f"could not start bash: {exc}")
        log.info(
            "run %s: started pid %s (timeout %.0fs)", run_id, proc.pid, request.timeout_seconds
        )
        ended = self._wait(proc, request, sandboxed=not problem)
        # Whatever happened, no process of this run may outlive it (background children too).
        if problem:
            kill_group(proc.pid, signal.SIGKILL)
        else:
            sandbox.kill(proc)
        if ended == "timeout":
            reason = f"timed out after {request.timeout_minutes} minute(s); every process of the run was killed"
            return self._finish(
                log_file, notes, RunState.timed_out, reason, exit_code=proc.returncode
            )
        if ended == "cancel":
            reason = "cancelled; every process of the run was killed"
            return self._finish(
                log_file, notes, RunState.cancelled, reason, exit_code=proc.returncode
            )
        code_ = proc.returncode
        if code_ != 0:
            reason = (
                f"command exited with status {code_}"
                if code_ > 0
                else f"command was killed by signal {-code_}"
            )
            return self._finish(log_file, notes, RunState.failed, reason, exit_code=code_)
        return self._publish(request, run_dir, public, log_file, notes)

    def _publish(self, request, run_dir: Path, public, log_file, notes) -> RunOutcome:
        try:
            staged, refusals = stage_directory(
                run_dir / "job",
                request.output_dir,
                run_dir / "staging",
                self.config.publish_max_file_bytes,
            )
        except OutputMissing:
            reason = f"output directory {request.output_dir!r} does not exist after the command finished; write results there"
            return self._finish(log_file, notes, RunState.failed, reason, exit_code=0)
        except OSError as exc:
            reason = f"could not read the output directory: {exc}"
            return self._finish(log_file, notes, RunState.failed, reason, exit_code=0)
        if not refusals:
            refusals = check_staged(staged, guard_scanner(self.settings, self.config))
        if refusals:
            for refusal in refusals:
                self._note(log_file, notes, f"not publishing {refusal.path}: {refusal.reason}")
            first = refusals[0]
            reason = f"published output guard refused {len(refusals)} file(s) ({first.path}: {first.reason}); nothing was published"
            return self._finish(log_file, notes, RunState.failed, reason, exit_code=0)
        try:
            keys = publish_staged(public, request.job_name, staged)
        except (StoreError, OSError) as exc:
            return self._finish(
                log_file, notes, RunState.failed, f"publishing failed: {exc}", exit_code=0
            )
        for key in keys:
            self._note(log_file, notes, f"published {key}")
        reason = f"succeeded; published {len(keys)} file(s)"
        return self._finish(
            log_file, notes, RunState.succeeded, reason, exit_code=0, published_files=keys
        )

    def _start_sandboxed(self, request, job_dir: Path, tmp_dir: Path, log_file, note):
        settings, config = self.settings, self.config
        read_only = []
        published_url = settings.published_url
        published_root = _local_root(settings.published_url)
        if published_root:
            os.makedirs(published_root, exist_ok=True)
            read_only.append((published_root, sandbox.PUBLISHED_DIR))
            published_url = f"file://{sandbox.PUBLISHED_DIR}"
        elif published_url and not config.sandbox_network:
            note(
                "note: the sandbox has no network (TELEMETRY_SCHEDULER_SANDBOX_NETWORK is off), "
                f"so the published store {published_url} cannot be reached"
            )
        schema_path = settings.schema_path
        if schema_path and os.path.isfile(schema_path):
            read_only.append((schema_path, SCHEMA_TARGET))
            schema_path = SCHEMA_TARGET
        # What a job may read besides the published data: its own earlier public output (an
        # incremental job such as the aggregates reads its index and rerun requests there)
        # and the cached Histograms.json files (public Mozilla data) for bucket layouts.
        public_url = histogram_cache = ""
        public_root = _local_root(settings.public_url)
        own_output = os.path.join(public_root, request.job_name) if public_root else ""
        if own_output and os.path.isdir(own_output):
            read_only.append((own_output, f"{sandbox.PUBLIC_DIR}/{request.job_name}"))
            public_url = f"file://{sandbox.PUBLIC_DIR}"
        if settings.histogram_cache and os.path.isdir(settings.histogram_cache):
            read_only.append((settings.histogram_cache, sandbox.HISTOGRAM_CACHE_DIR))
            histogram_cache = sandbox.HISTOGRAM_CACHE_DIR
        spec = sandbox.SandboxSpec(
            home=job_dir,
            tmp=tmp_dir,
            read_only=tuple(read_only),
            hide=(settings.data_dir, str(self.work_root)),
            network=config.sandbox_network,
            limits=sandbox.Limits(
                address_space_bytes=config.sandbox_memory_bytes,
                processes=config.sandbox_processes,
                file_bytes=config.sandbox_file_bytes,
                cpu_seconds=config.sandbox_cpu_seconds,
            ),
            bwrap=config.sandbox_bwrap,
        )
        sandbox.prepare_home(job_dir)
        sandbox.prepare_home(tmp_dir)
        env = job_environment(
            settings,
            request,
            home=sandbox.JOB_DIR,
            tmp="/tmp",
            published_url=published_url,
            schema_path=schema_path,
            public_url=public_url,
            histogram_cache=histogram_cache,
        )
        return sandbox.start(
            spec,
            ["bash", "-c", request.command],
            cwd=job_dir.parent,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )

    def _start_unsandboxed(self, request, job_dir: Path, tmp_dir: Path, log_file):
        env = job_environment(
            self.settings,
            request,
            home=str(job_dir),
            tmp=str(tmp_dir),
            published_url=self.settings.published_url,
            schema_path=self.settings.schema_path,
            public_url=self.settings.public_url,
            histogram_cache=self.settings.histogram_cache,
        )
        return subprocess.Popen(
            ["bash", "-c", request.command],
            cwd=job_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )

    def _wait(self, proc: subprocess.Popen, request: RunRequest, *, sandboxed: bool) -> str:
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
        log.warning("run %s: %s; stopping every process of the run", request.run_id, ended)
        if sandboxed:
            sandbox.stop(proc, self.config.kill_grace_seconds)
            return ended
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
