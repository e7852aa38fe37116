"""The embedded worker: a sandbox with its own OpenSSH server, on this machine.

"Launching" a local worker makes `$TELEMETRY_DATA_DIR/workers/<id>-<name>/` and starts, inside
the same bubblewrap sandbox as scheduled runs (`scheduler.sandbox`), Debian's `sshd` (one
`sshd -i` per connection, reached through `ssh_relay` on a port of its own). It accepts only
the key given at launch, and logs in as the unprivileged user `worker` (uid 65534 in the
sandbox). What a login sees:

- `/home/worker` (HOME, the working directory): read-write, kept until the worker ends, with
  `examples/` (the MapReduce examples, read-only) and a `.profile` setting the environment;
- the published data read-only at /data/published (`TELEMETRY_PUBLISHED_URL` points there; a
  remote store keeps its URL, with the scheduler's read-only job credentials when set);
- this installation's Python environment and package (read-only) first on PATH, so
  `python -m mapreduce.job ...`, `python -m mapreduce.cat` etc. work as in the README;
- a private /tmp, and the system's /usr. Nothing else of the machine: not the data directory
  (app database, secret key, incoming data, other workers), not /home or /root, and only its
  own processes, and no network but its own loopback (unless the published store is remote:
  then the machine's network, to reach it).

Killing the worker (or its expiry) kills the sandbox's PID namespace, which ends every
process in it, daemons included, then deletes the directory. The sandbox dies with the
dashboard process that started it (bubblewrap's --die-with-parent).

Layout of the worker directory (root-only but for what is bound into the sandbox):
    home/  tmp/  run/{ssh.sock,sshd.log}  sshd.log (the acceptor's)  sshd.pid
    ssh/{sshd_config,authorized_keys,host_ed25519_key,passwd,acceptor.py}
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dashboard.errors import WorkerProviderError
from dashboard.workers.base import LaunchResult, WorkerProvider
from dashboard.workers.ssh_relay import ACCEPTOR, READY_LINE, SOCKET_NAME, Relay
from pipeline.config import Settings
from scheduler import sandbox

log = logging.getLogger(__name__)

SSHD = "/usr/sbin/sshd"
USER = "worker"
HOME = "/home/worker"
SSH_DIR = "/etc/worker-ssh"
RUN_DIR = "/run/worker"
EXAMPLES = Path(__file__).resolve().parents[2] / "mapreduce" / "examples"
START_SECONDS = 20.0
STOP_GRACE_SECONDS = 5.0

# Started sandboxes of this process, by workspace, so they are waited for (no zombies).
_running: dict[str, subprocess.Popen] = {}
_relays: dict[str, Relay] = {}
_lock = threading.Lock()


def worker_environment(settings: Settings) -> dict[str, str]:
    """The variables every login gets: where the data is, and this installation's Python."""
    published = settings.published_url
    if published.startswith("file://"):
        published = f"file://{sandbox.PUBLISHED_DIR}"
    env = {
        "TELEMETRY_PUBLISHED_URL": published,
        "TELEMETRY_DATA_DIR": f"{HOME}/var",
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }
    if settings.s3_endpoint_url and not published.startswith("file://"):
        env["TELEMETRY_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    credentials = {
        "AWS_ACCESS_KEY_ID": getattr(settings, "job_aws_access_key_id", ""),
        "AWS_SECRET_ACCESS_KEY": getattr(settings, "job_aws_secret_access_key", ""),
        "AWS_SESSION_TOKEN": getattr(settings, "job_aws_session_token", ""),
        "AWS_DEFAULT_REGION": getattr(settings, "job_aws_region", ""),
    }
    if not published.startswith("file://"):
        env.update({k: v for k, v in credentials.items() if v})
    return env


def sshd_config(environment: dict[str, str]) -> str:
    """An sshd run by the sandbox user: key-only, no forwarding, the environment set."""
    setenv = " ".join(f'"{k}={v}"' for k, v in sorted(environment.items()))
    return "\n".join(
        [
            f"HostKey {SSH_DIR}/host_ed25519_key",
            "PidFile none",
            f"AuthorizedKeysFile {SSH_DIR}/authorized_keys",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin no",
            f"AllowUsers {USER}",
            "AllowTcpForwarding no",
            "AllowStreamLocalForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            "PrintMotd no",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            f"SetEnv {setenv}",
            "",
        ]
    )


def _profile(environment: dict[str, str]) -> str:
    """~/.profile: a login shell's /etc/profile resets PATH; this sets it (and the rest) again."""
    lines = ["# Written when the worker started; yours to change."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(environment.items())]
    lines += ['[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"', 'PS1="(worker) \\w\\$ "', ""]
    return "\n".join(lines)


def _host_key() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _owned_by_sandbox(path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, sandbox.SANDBOX_UID, sandbox.SANDBOX_GID)


class LocalProvider(WorkerProvider):
    name = "local"

    def __init__(self, settings: Settings, listen: str = "127.0.0.1") -> None:
        self.settings = settings
        self.listen = listen
        self.root = Path(settings.data_dir) / "workers"

    def spec(self, workspace: Path) -> sandbox.SandboxSpec:
        read_only = [
            (str(workspace / "ssh"), SSH_DIR),
            (str(workspace / "ssh" / "passwd"), "/etc/passwd"),
        ]
        if EXAMPLES.is_dir():
            read_only.append((str(EXAMPLES), f"{HOME}/examples"))
        published = self.settings.published_url
        if published.startswith("file://"):
            path = Path(published[len("file://") :])
            path.mkdir(parents=True, exist_ok=True)
            read_only.append((str(path), sandbox.PUBLISHED_DIR))
        return sandbox.SandboxSpec(
            home=workspace / "home",
            home_target=HOME,
            tmp=workspace / "tmp",
            read_only=tuple(read_only),
            read_write=((str(workspace / "run"), RUN_DIR),),
            hide=(str(Path(self.settings.data_dir).resolve()),),
            network=not published.startswith("file://"),
            hostname=workspace.name[:63],
        )

    def _prepare(self, workspace: Path, ssh_public_key: str) -> None:
        environment = worker_environment(self.settings)
        self.root.mkdir(parents=True, exist_ok=True)
        workspace.mkdir(mode=0o700, exist_ok=False)
        home, tmp, ssh, run = (workspace / d for d in ("home", "tmp", "ssh", "run"))
        for directory in (home, tmp, ssh, run):
            directory.mkdir(mode=0o755)
        tmp.chmod(0o700)
        run.chmod(0o700)
        _owned_by_sandbox(run)
        (home / "var").mkdir()
        (home / "examples").mkdir()  # mount point of the read-only examples
        (home / ".profile").write_text(_profile(environment))
        sandbox.prepare_home(home)
        _owned_by_sandbox(tmp)
        (ssh / "authorized_keys").write_text(ssh_public_key + "\n")
        (ssh / "passwd").write_text(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{USER}:x:{sandbox.SANDBOX_UID}:{sandbox.SANDBOX_GID}:analysis worker:{HOME}:/bin/bash\n"
        )
        (ssh / "sshd_config").write_text(sshd_config(environment))
        (ssh / "acceptor.py").write_text(ACCEPTOR)
        key = ssh / "host_ed25519_key"
        key.touch(mode=0o600)
        key.write_bytes(_host_key())
        _owned_by_sandbox(key)
        for name in ("authorized_keys", "passwd", "sshd_config", "acceptor.py"):
            (ssh / name).chmod(0o644)

    def launch(
        self,
        worker_id: int,
        name: str,
        owner: str,
        ssh_public_key: str,
        expires_at: dt.datetime | None = None,
    ) -> LaunchResult:
        reason = sandbox.available()
        if reason is None and not os.access(SSHD, os.X_OK):
            reason = f"{SSHD} is missing (Debian package openssh-server; `make setup` installs it)"
        if reason:
            raise WorkerProviderError(f"cannot start a local worker: {reason}")
        workspace = self.root / f"{worker_id}-{name}"
        try:
            self._prepare(workspace, ssh_public_key)
        except OSError as exc:
            shutil.rmtree(workspace, ignore_errors=True)
            raise WorkerProviderError(f"cannot create the workspace {workspace}: {exc}") from exc
        self._start(workspace)
        try:
            relay = Relay(self.listen, workspace / "run").start()
        except OSError as exc:
            self.terminate(str(workspace))
            raise WorkerProviderError(f"cannot listen on {self.listen}: {exc}") from exc
        with _lock:
            _relays[str(workspace)] = relay
        port = relay.port
        command = f"ssh -p {port} {USER}@{self.listen}"
        log.info("worker %s: sshd on %s:%s in sandbox %s", worker_id, self.listen, port, workspace)
        return LaunchResult(
            instance_id=str(workspace),
            address=f"{self.listen}:{port}",
            connect_command=command,
            running=True,
        )

    def _start(self, workspace: Path) -> None:
        """Start the acceptor in the sandbox and wait until it listens (or say why it did not)."""
        log_path = workspace / "sshd.log"
        argv = [sys.executable, f"{SSH_DIR}/acceptor.py", f"{RUN_DIR}/{SOCKET_NAME}", SSHD]
        argv += [f"{SSH_DIR}/sshd_config", f"{RUN_DIR}/sshd.log"]
        with open(log_path, "wb") as log_file:
            proc = sandbox.start(
                self.spec(workspace),
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        (workspace / "sshd.pid").write_text(str(proc.pid))
        with _lock:
            _running[str(workspace)] = proc
        deadline = time.monotonic() + START_SECONDS
        while READY_LINE.encode() not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace").strip().splitlines()
                self.terminate(str(workspace))
                raise WorkerProviderError(
                    "the worker's sshd did not start: " + (output[-1] if output else "no output")
                )
            time.sleep(0.05)

    def is_gone(self, instance_id: str) -> bool:
        """The sandbox ended by itself (its sshd died, or the dashboard that ran it stopped)."""
        workspace = Path(instance_id)
        with _lock:
            proc = _running.get(str(workspace))
        if proc is not None:
            return proc.poll() is not None
        return _sandbox_pid(workspace) is None

    def terminate(self, instance_id: str) -> None:
        workspace = Path(instance_id)
        if workspace.parent != self.root:
            raise WorkerProviderError(f"{instance_id} is not a workspace under {self.root}")
        with _lock:
            proc = _running.pop(str(workspace), None)
            relay = _relays.pop(str(workspace), None)
        if relay is not None:
            relay.close()
        if proc is not None:
            sandbox.stop(proc, STOP_GRACE_SECONDS)
        else:
            _stop_by_pid(workspace)
        shutil.rmtree(workspace, ignore_errors=True)
        if workspace.exists():
            raise WorkerProviderError(f"could not delete the workspace {workspace}")


def _sandbox_pid(workspace: Path) -> int | None:
    """The pid of the worker's running sandbox, from its pid file (None: not running)."""
    try:
        pid = int((workspace / "sshd.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, ValueError, IndexError):
        return None
    if str(workspace).encode() not in cmdline or state == "Z":
        return None  # gone, or the pid was reused by something else
    return pid


class _ForeignSandbox:
    """What `sandbox.kill` needs of a sandbox this process did not start: its pid, and
    whether it still runs (checked again through /proc, so a reused pid is never signalled)."""

    def __init__(self, pid: int, workspace: Path) -> None:
        self.pid, self.workspace = pid, workspace

    def poll(self) -> int | None:
        return None if _sandbox_pid(self.workspace) == self.pid else 0


def _stop_by_pid(workspace: Path) -> None:
    """Kill a sandbox another process (an earlier dashboard) started, if it still runs."""
    pid = _sandbox_pid(workspace)
    if pid is None:
        return
    tree = {pid, *sandbox.descendants(pid)}
    sandbox.kill(_ForeignSandbox(pid, workspace))
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    sandbox.wait_gone(tree)


def stop_all() -> None:
    """Stop every worker sandbox this process started (tests, shutdown)."""
    with _lock:
        running = list(_running.items())
        relays = list(_relays.values())
        _running.clear()
        _relays.clear()
    for relay in relays:
        relay.close()
    for _workspace, proc in running:
        sandbox.stop(proc, STOP_GRACE_SECONDS)
