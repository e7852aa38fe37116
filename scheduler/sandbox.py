"""Run untrusted code (a user's job, an analysis worker's sshd) in a bubblewrap sandbox.

Why: a job is code from anyone with an allowed email address. Without a sandbox it runs with
the service's rights: it can read the service's environment through /proc, the database, the
secret key, every other user's code and raw data. With one it sees only what is listed here.

What the sandboxed process gets (`build_command`):
- an unprivileged uid/gid (`SANDBOX_UID`/`SANDBOX_GID`, 65534 "nobody"). When the service runs
  as root, this is a real host uid (bwrap sets up the namespaces as root, then `setpriv` drops
  to 65534 with no capabilities, an empty bounding set and no_new_privs). When the service runs
  as another user, bwrap's user namespace maps the service's uid to 65534 inside; on the host
  the processes keep the service's uid (so run the service as root or a dedicated user);
- new PID, IPC, UTS, mount (and cgroup when possible) namespaces; a new network namespace with
  only a loopback interface unless `SandboxSpec.network` is set;
- read-only: /usr (and /bin, /lib, ... as on the host), a short list of /etc files
  (`ETC_FILES`: users, DNS, TLS certificates, time zone, loader cache), the Python
  installation, the project's virtualenv and the project's package directories;
- read-write: `home` at `SandboxSpec.home_target` (default /job, also the working directory)
  and a private /tmp (the `tmp` directory given, or a tmpfs);
- `read_only`/`read_write` extra binds (the published store at /data/published, ...);
- a private /proc (only the sandbox's processes), a minimal /dev and a writable /dev/shm;
- nothing else: no other part of the data directory, no /home, /root, /run, /var, /sys;
  `hide` paths (the data directory) get an empty tmpfs if they lie under a bound directory;
- resource limits (`Limits`, applied with prlimit before bwrap starts, so they are inherited
  by everything in the sandbox): address space, processes (per host uid), file size, CPU time;
- `--die-with-parent`: when the bwrap process we started dies, the PID namespace's init gets
  SIGKILL, and the kernel kills every process in the namespace, daemonised (`setsid`) ones too.

Public API (kept small: the scheduler's local runner and the analysis workers use it):
`SandboxSpec`, `Limits`, `available(bwrap) -> reason | None`, `build_command(spec, argv)`,
`prepare_home(path)`, `start(spec, argv, **popen_kwargs) -> Popen`, `stop(proc, grace)` and
`kill(proc)`.

A long-lived service in the sandbox, e.g. an analysis worker's sshd serving one user:

    prepare_home(home)                      # owned by the sandbox uid when we are root
    spec = SandboxSpec(home=home, home_target="/home/analyst", network=True,
                       read_only=((passwd_file, "/etc/passwd"), (sshd_dir, "/etc/ssh/worker")))
    proc = start(spec, ["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/worker/sshd_config"])
    ...
    stop(proc)                              # everything started in it ends with it

(`network=True` shares the host's network so the daemon's port is reachable; an extra bind on
/etc/passwd, bound after the default one, replaces it, e.g. to give uid 65534 that home.)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SANDBOX_UID = 65534
SANDBOX_GID = 65534
JOB_DIR = "/job"
PUBLISHED_DIR = "/data/published"
HISTOGRAM_CACHE_DIR = "/data/histogram-cache"
PUBLIC_DIR = "/data/public"  # holds only the running job's own `<job>/` (the local runner)
SCHEMA_DIR = "/data/schema"

# System directories bound read-only when they exist (symlinks, as on merged-/usr systems, are
# recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The /etc entries a job needs: users and groups (for `id`, Python's getpass), name resolution,
# TLS roots, time zone, the dynamic loader's cache, alternatives (e.g. /usr/bin/awk).
ETC_FILES = (
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "resolv.conf",
    "gai.conf",
    "protocols",
    "services",
    "localtime",
    "timezone",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "mime.types",
    "profile",
    "bash.bashrc",
    "inputrc",
    "python3",
    "python3.11",
)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-process resource limits (setrlimit), inherited by everything in the sandbox.

    0 means "no limit". `processes` counts every process of the sandbox's host uid."""

    address_space_bytes: int = 4 * 1024**3
    processes: int = 512
    file_bytes: int = 1024**3
    cpu_seconds: int = 6 * 3600
    open_files: int = 4096


@dataclasses.dataclass(frozen=True)
class SandboxSpec:
    """What one sandboxed process may see and use (see the module docstring)."""

    home: Path  # bound read-write at home_target; HOME and the working directory
    home_target: str = JOB_DIR
    tmp: Path | None = None  # bound read-write at /tmp (None: an empty tmpfs)
    read_only: tuple[tuple[str, str], ...] = ()  # (host path, sandbox path)
    read_write: tuple[tuple[str, str], ...] = ()
    hide: tuple[str, ...] = ()  # host paths never visible, even under a bound directory
    network: bool = False
    limits: Limits = Limits()
    bwrap: str = "bwrap"
    hostname: str = "sandbox"


def _host_bwrap(bwrap: str) -> str | None:
    return (
        shutil.which(bwrap)
        if os.sep not in bwrap
        else (bwrap if os.access(bwrap, os.X_OK) else None)
    )


def _as_root() -> bool:
    return os.geteuid() == 0


def _setpriv() -> str | None:
    return shutil.which("setpriv")


def _project_dirs() -> list[str]:
    """The project's package directories (an editable install imports them from the source
    tree) and the Python environment (venv and base installation), all read-only."""
    root = Path(__file__).resolve().parent.parent
    packages = []
    for child in sorted(root.iterdir()):
        try:
            if child.name != "tests" and (child / "__init__.py").is_file():
                packages.append(str(child))
        except OSError:  # unreadable: not ours to show
            continue
    prefixes = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    prefixes.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    return packages + sorted(prefixes)


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _limit_args(limits: Limits) -> list[str]:
    pairs = (
        ("--as", limits.address_space_bytes),
        ("--nproc", limits.processes),
        ("--fsize", limits.file_bytes),
        ("--cpu", limits.cpu_seconds),
        ("--nofile", limits.open_files),
    )
    args = [f"{flag}={value}" for flag, value in pairs if value]
    return ["prlimit", "--core=0", *args, "--"]


def build_command(spec: SandboxSpec, argv: Sequence[str]) -> list[str]:
    """The full command line (prlimit + bwrap [+ setpriv] + argv) running `argv` in the sandbox.

    Run it with `start` (new session, so `stop` can kill it); paths in `argv` and in the
    environment must be sandbox paths (`spec.home_target`, /tmp, the extra bind targets)."""
    bwrap = _host_bwrap(spec.bwrap) or spec.bwrap
    cmd = _limit_args(spec.limits) + [bwrap]
    root = _as_root()
    if not root:
        cmd += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID)]
    cmd += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not spec.network:
        cmd.append("--unshare-net")
    cmd += ["--die-with-parent", "--new-session", "--hostname", spec.hostname]
    if root:
        # Namespaces and mounts are set up as root; setpriv below drops to the sandbox uid.
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    bound: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
            bound.append(path)
    cmd += ["--perms", "0755", "--dir", "/etc"]  # else bwrap makes it 0700: unreadable
    for name in ETC_FILES:
        cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    made: set[str] = {"/etc"}

    def bind(flag: str, source: str, target: str) -> None:
        # bwrap would copy the modes of the source's parents (0700 /root, a private data
        # directory) onto the parents it creates; make them traversable (0755) first.
        parent = os.path.dirname(target.rstrip("/"))
        missing = []
        while parent not in ("/", "") and parent not in made:
            if any(_under(parent, done) for done in bound):
                break
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            cmd.extend(["--perms", "0755", "--dir", directory])
            made.add(directory)
        cmd.extend([flag, source, target])
        bound.append(target)

    for path in _project_dirs():
        if not any(_under(path, done) for done in bound):
            bind("--ro-bind", path, path)
    # A private /dev (null, zero, random, tty, ...) with a writable /dev/shm: Python's
    # multiprocessing needs shared memory.
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]
    if spec.tmp is None:
        cmd += ["--tmpfs", "/tmp"]
    else:
        cmd += ["--bind", str(spec.tmp), "/tmp"]
    for hidden in spec.hide:
        real = os.path.realpath(hidden)
        if any(_under(real, done) for done in bound):
            cmd += ["--tmpfs", real]
    bind("--bind", str(spec.home), spec.home_target)
    for source, target in spec.read_only:
        bind("--ro-bind", str(source), target)
    for source, target in spec.read_write:
        bind("--bind", str(source), target)
    cmd += ["--chdir", spec.home_target]
    if root:
        cmd += [
            _setpriv() or "/usr/bin/setpriv",
            f"--reuid={SANDBOX_UID}",
            f"--regid={SANDBOX_GID}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    return cmd + list(argv)


_WORKS: set[tuple[str, bool]] = set()


def _probe(bwrap: str, root: bool) -> str | None:
    path = _host_bwrap(bwrap)
    if path is None:
        return (
            f"bubblewrap ({bwrap!r}) is not installed or not executable (Debian package bubblewrap)"
        )
    if shutil.which("prlimit") is None:
        return "prlimit (util-linux) is not installed"
    if root and _setpriv() is None:
        return "setpriv (util-linux) is not installed"
    probe_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    spec = SandboxSpec(home=probe_dir, bwrap=path, limits=Limits(processes=0))
    try:
        done = subprocess.run(
            build_command(spec, ["/bin/sh", "-c", "id -u"]),
            capture_output=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if done.returncode != 0 or done.stdout.strip() != str(SANDBOX_UID).encode():
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"bubblewrap could not set up a sandbox here ({detail[-1] if detail else f'exit {done.returncode}'}); user namespaces may be disabled"
    return None


def available(bwrap: str = "bwrap") -> str | None:
    """None when a sandbox can be set up on this machine, else the reason it cannot (one line).

    Tries a real sandboxed `id -u`; a success is remembered per bwrap path, a failure is
    tried again next time (the operator may install bubblewrap without a restart)."""
    key = (bwrap, _as_root())
    if key in _WORKS:
        return None
    problem = _probe(*key)
    if problem is None:
        _WORKS.add(key)
    return problem


def prepare_home(path: Path) -> None:
    """Make a host directory (and everything in it) writable by the sandbox uid.

    Only needed (and only possible) when the service runs as root; symlinks are not followed."""
    if not _as_root():
        return
    os.lchown(path, SANDBOX_UID, SANDBOX_GID)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), SANDBOX_UID, SANDBOX_GID)


def start(spec: SandboxSpec, argv: Sequence[str], **popen_kwargs) -> subprocess.Popen:
    """Start `argv` in the sandbox as a long-lived process (a job, an sshd): a new session,
    so `stop` can kill the bwrap process and with it the whole PID namespace."""
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    popen_kwargs.setdefault("close_fds", True)
    return subprocess.Popen(build_command(spec, argv), start_new_session=True, **popen_kwargs)


def descendants(pid: int) -> list[int]:
    """Host pids of every descendant of `pid` (children files of /proc), deepest last."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        for task in _listdir(f"/proc/{current}/task"):
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    children = [int(c) for c in handle.read().split()]
            except OSError:
                continue
            found.extend(children)
            queue.extend(children)
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(proc: subprocess.Popen) -> None:
    """Ask every process in the sandbox to stop (SIGTERM); the namespace's init ignores it."""
    for pid in descendants(proc.pid):
        _signal(pid, signal.SIGTERM)


def kill(proc: subprocess.Popen) -> None:
    """Kill the sandbox: SIGKILL to bwrap's process group (and to every process below it);
    --die-with-parent then kills the PID namespace's init, and the kernel every process left
    in the namespace. Once bwrap has exited and been reaped there is nothing left to kill (it
    exits only after the namespace's init) and its pid may belong to someone else: no signal."""
    if proc.poll() is not None:
        return
    for pid in descendants(proc.pid):
        _signal(pid, signal.SIGKILL)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # safe: the group leader is not reaped yet
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen, grace_seconds: float = 10.0) -> int | None:
    """SIGTERM to everything in the sandbox, SIGKILL after `grace_seconds`; returns the exit
    status (None when even SIGKILL did not end it within 10 s)."""
    tree = set(descendants(proc.pid)) if proc.poll() is None else set()
    if proc.poll() is None:
        terminate(proc)
        try:
            proc.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + grace_seconds
    while descendants(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    kill(proc)
    try:
        status = proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
        return None
    wait_gone(tree)
    return status


def wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until every one of `pids` has exited (gone, or a zombie); returns those left.

    Once bwrap has exited the kernel is still ending the processes of its PID namespace, and
    they no longer show as its descendants: a caller that says "every process of the run is
    gone" waits for the ones it saw before the kill."""
    deadline = time.monotonic() + timeout
    while (left := {pid for pid in pids if _running(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False
