"""Attacks on the scheduler as a user with an ordinary account would make them: real jobs
through the real local runner (in bubblewrap, as CI runs it: as root), each of which must
fail, with nothing private in the public store afterwards."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from pipeline.records import encode_record
from pipeline.stores import open_store
from scheduler.jobs import store_tarball
from scheduler.models import RunState
from scheduler.runners.local import LocalRunner
from tests.support.scheduler import processes_running, request
from tests.support.tarballs import make_tarball

SECRET = "s3cr3t-do-not-publish-7f3a"

# No skip when bubblewrap is missing: `make setup` installs it, and CI must exercise the real
# sandbox (without it, every run here is refused, as the fail-closed test shows).


@pytest.fixture
def runner(settings, config) -> LocalRunner:
    return LocalRunner(settings, config)


@pytest.fixture
def config():
    from scheduler.config import SchedulerConfig

    return SchedulerConfig(kill_grace_seconds=1.0, publish_max_file_bytes=2_000_000)


def everything_public(public) -> bytes:
    return b"\n".join(public.get(info.key) for info in public.list(""))


def attempt(settings, runner, command: str, **kwargs):
    """Run `command` (which tries to copy something private into output/) and return the
    outcome; the command itself never fails, so only the sandbox and the guard stop it."""
    full = f"mkdir -p output; {command}; true"
    return runner.execute(request(settings, full, **kwargs))


def test_job_runs_as_an_unprivileged_user_without_network(settings, runner, public):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted = threading.Event()
    threading.Thread(target=lambda: (listener.accept(), accepted.set()), daemon=True).start()
    command = (
        "id -u > output/uid; id -g >> output/uid; whoami > output/name; "
        "test -r /etc/ssl/certs/ca-certificates.crt && echo readable > output/certs; "
        f"python -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)' "
        "> output/net 2>&1; echo $? >> output/net"
    )
    outcome = attempt(settings, runner, command)
    listener.close()
    assert outcome.state == RunState.succeeded, outcome.reason
    assert public.get("demo/data/uid").split() == [b"65534", b"65534"]
    assert public.get("demo/data/name") == b"nobody\n"  # /etc is readable, the system's
    assert public.get("demo/data/certs") == b"readable\n"
    assert public.get("demo/data/net").split()[-1] != b"0"
    assert not accepted.is_set()


def test_job_cannot_read_the_scheduler_environment(settings, runner, public, monkeypatch):
    monkeypatch.setenv("TELEMETRY_DASHBOARD_SECRET_KEY", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    pid = os.getpid()
    command = (
        f"cat /proc/{pid}/environ > output/environ 2>&1; "
        "for p in /proc/[0-9]*; do cat $p/environ; done > output/all 2>&1; env > output/env"
    )
    outcome = attempt(settings, runner, command)
    assert outcome.state == RunState.succeeded, outcome.reason
    assert SECRET.encode() not in everything_public(public)


def test_job_cannot_read_the_data_directory(settings, runner, public):
    data = settings.data_dir
    (open(os.path.join(data, "dashboard-secret-key"), "w")).write(SECRET)
    incoming = open_store(settings.incoming_url)
    incoming.put("20260101/raw.batch", f"incoming {SECRET}".encode())
    store_tarball(settings, "other", make_tarball({"code.py": f"# {SECRET}\n"}))
    db_path = settings.database_url.split(":///", 1)[1]
    command = (
        f"cat {data}/dashboard-secret-key > output/key 2>&1; cp {db_path} output/app.db 2>&1; "
        f"cp -r {data}/incoming output/incoming 2>&1; cp -r {data}/code output/code 2>&1; "
        f"ls -R {data} > output/listing 2>&1; ls -R / 2>/dev/null | grep -v '^/proc' | grep -e var -e secret -e app.db > output/root-listing"
    )
    outcome = attempt(settings, runner, command)
    assert outcome.state == RunState.succeeded, outcome.reason
    published = everything_public(public)
    assert SECRET.encode() not in published
    assert b"SQLite format 3" not in published


def test_job_cannot_write_into_the_public_store(settings, runner, public):
    public.put("victim/data/summary.json", b'{"honest": true}')
    root = settings.public_url.removeprefix("file://")
    command = (
        f"echo pwned > {root}/victim/data/summary.json; "
        "echo pwned > /data/published/planted 2>/dev/null"
    )
    outcome = attempt(settings, runner, command)
    assert outcome.state == RunState.succeeded, outcome.reason
    assert public.get("victim/data/summary.json") == b'{"honest": true}'
    assert not open_store(settings.published_url).exists("planted")


def test_published_store_is_readable_at_the_documented_path(settings, runner, public):
    open_store(settings.published_url).put("a/b.txt", b"published bytes")
    outcome = attempt(settings, runner, "cp /data/published/a/b.txt output/copy")
    assert outcome.state == RunState.succeeded, outcome.reason
    assert public.get("demo/data/copy") == b"published bytes"


def test_job_reads_its_own_earlier_output_and_the_histogram_cache_only(settings, runner, public):
    """An incremental job (the aggregates) reads its own index and rerun requests; nothing
    of another job's output is visible, and its own is read-only (the publish step alone
    writes it)."""
    public.put("demo/data/index.json", b'{"days": {}}')
    public.put("demo/rerun-requests/1.json", b"{}")
    public.put("victim/data/summary.json", b'{"honest": true}')
    cache = Path(settings.histogram_cache) / "releases/x/abc"
    cache.mkdir(parents=True)
    (cache / "Histograms.json").write_text('{"GC_MS": {}}')
    command = (
        'cp "${TELEMETRY_PUBLIC_URL#file://}/demo/data/index.json" output/index; '
        'ls "${TELEMETRY_PUBLIC_URL#file://}/demo/rerun-requests" > output/requests; '
        'ls "${TELEMETRY_PUBLIC_URL#file://}" > output/visible; '
        'cp "$TELEMETRY_HISTOGRAM_CACHE/releases/x/abc/Histograms.json" output/hist; '
        'echo pwned > "${TELEMETRY_PUBLIC_URL#file://}/demo/data/index.json" 2>/dev/null'
    )
    outcome = attempt(settings, runner, command)
    assert outcome.state == RunState.succeeded, outcome.reason
    assert public.get("demo/data/index") == b'{"days": {}}'
    assert public.get("demo/data/requests") == b"1.json\n"
    assert public.get("demo/data/visible") == b"demo\n"  # not victim
    assert public.get("demo/data/hist") == b'{"GC_MS": {}}'
    assert public.get("victim/data/summary.json") == b'{"honest": true}'


@pytest.mark.parametrize(
    "command, expected",
    [
        ("ln -s /etc output/etcdir", "symbolic link"),
        ("ln -s /etc/passwd output/passwd", "symbolic link"),
        ("echo private > mine; ln mine output/hard", "hard link"),
        ("rmdir output; ln -s /data/published output", "symbolic link"),
        ("rmdir output; mkdir real; ln -s real output; echo x > real/f", "symbolic link"),
        ("mkfifo output/fifo", "FIFO"),
        ("cd output; for i in $(seq 40); do mkdir d; cd d; done; echo x > f", "nested deeper"),
        (
            "python -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"output/sock\")'",
            "socket",
        ),
    ],
    ids=[
        "dir-symlink",
        "file-symlink",
        "hard-link",
        "output-symlink",
        "output-symlink-inside",
        "fifo",
        "deep",
        "socket",
    ],
)
def test_links_and_special_files_are_refused(settings, runner, public, command, expected):
    outcome = attempt(settings, runner, f"echo fine > output/fine.txt 2>/dev/null; {command}")
    assert outcome.state == RunState.failed
    assert expected in outcome.reason and "nothing was published" in outcome.reason
    assert list(public.list("demo/data/")) == []


# A raw record line that is not submission-shaped (so only the line rule can catch it) and a
# classic ping (caught by its shape, even without the docId).
LINE_RECORD = '0b4cd4b2-6a3d-4c3e-9f1e-2f0f2f6c1a10\t{"ver": 4, "size": 12}\n'
RECORD = (
    '0b4cd4b2-6a3d-4c3e-9f1e-2f0f2f6c1a10\t{"ver": 4, "info": {"reason": "saved-session"}, '
    '"histograms": {"GC_MS": {"values": {"0": 1}}}}\n'
)


@pytest.mark.parametrize(
    "command, rule",
    [
        ("bzip2 -c raw.txt > output/raw.bz2", "raw-record-line"),
        ("xz -c raw.txt > output/raw.xz", "raw-record-line"),
        (
            "head -c 300000 /dev/zero | tr '\\0' ' ' > output/p; cat raw.txt >> output/p",
            "raw-record-line",
        ),
        ("sed 's/\\t/ /' raw.txt > output/space.txt", "raw-record-line"),
        ("cut -f2 ping.txt > output/nodocid.json", "submission-json"),
        ("(echo '['; cut -f2 ping.txt; echo ']') > output/array.json", "submission-json"),
        ("cp records.batch output/copied.batch", "spool-record"),
        ("gzip -c raw.txt > r.gz; tar cf - r.gz | xz > output/nested.tar.xz", "raw-record-line"),
        (
            'python -c \'import zipfile; z = zipfile.ZipFile("output/r.zip", "w", 8); z.writestr("raw.txt", open("raw.txt").read()); z.close()\'',
            "raw-record-line",
        ),
        (
            'python -c \'import lz4.frame, sys; sys.stdout.buffer.write(lz4.frame.compress(open("raw.txt", "rb").read()))\' > output/r.lz4',
            "raw-record-line",
        ),
    ],
    ids=[
        "bz2",
        "xz",
        "padded",
        "space",
        "no-docid",
        "json-array",
        "batch",
        "tar-gz-xz",
        "zip",
        "lz4",
    ],
)
def test_raw_data_guard_evasions_are_refused(settings, runner, public, command, rule):
    batch = encode_record(1, "/submit/telemetry/x/saved-session/Firefox", {}, LINE_RECORD.encode())
    files = {"raw.txt": LINE_RECORD, "ping.txt": RECORD, "records.batch": batch}
    outcome = attempt(settings, runner, command, files=files)
    assert outcome.state == RunState.failed
    assert f"rule {rule}" in outcome.reason and "nothing was published" in outcome.reason
    assert list(public.list("demo/data/")) == []
    published_log = public.get("demo/logs/1.log").decode()
    assert f"rule {rule}" in published_log


def test_a_seen_doc_id_is_refused_anywhere_in_a_file(settings, runner, public):
    from convert.dedup import Deduplicator
    from pipeline.db import init_db, make_engine

    engine = make_engine(settings.database_url)
    init_db(engine)
    doc_id = "5d6c1f0e-8b7a-4c3d-9e2f-112233445566"
    Deduplicator(engine, 7).claim("batch-1", [doc_id])
    outcome = attempt(settings, runner, f"echo 'client,{doc_id.upper()},3' > output/t.csv")
    assert outcome.state == RunState.failed
    assert "rule docid-seen" in outcome.reason and "t.csv" in outcome.reason


def test_raw_data_printed_to_the_log_is_withheld(settings, runner, public):
    outcome = attempt(
        settings,
        runner,
        "cat raw.txt; echo '[scheduler x]' $(cat raw.txt)",
        files={"raw.txt": RECORD},
    )
    assert outcome.state == RunState.succeeded
    published_log = public.get("demo/logs/1.log").decode()
    assert "withheld" in published_log and "GC_MS" not in published_log


def test_without_a_sandbox_non_admin_runs_are_refused(settings, config, public):
    runner = LocalRunner(settings, dataclasses.replace(config, sandbox_bwrap="/nonexistent/bwrap"))
    outcome = runner.execute(request(settings, "mkdir output; echo ran > output/ran"))
    assert outcome.state == RunState.failed
    assert "no sandbox can be set up" in outcome.reason and "/nonexistent/bwrap" in outcome.reason
    assert "TELEMETRY_SCHEDULER_UNSAFE_NO_SANDBOX" in outcome.reason
    assert list(public.list("demo/data/")) == []


def test_without_a_sandbox_admins_and_the_unsafe_opt_out_still_run(settings, config, public):
    unsafe = dataclasses.replace(config, sandbox_bwrap="/nonexistent/bwrap", unsafe_no_sandbox=True)
    outcome = LocalRunner(settings, unsafe).execute(
        request(settings, "mkdir output; id -u > output/uid")
    )
    assert outcome.state == RunState.succeeded, outcome.reason
    assert "WITHOUT a sandbox" in public.get("demo/logs/1.log").decode()
    missing = dataclasses.replace(config, sandbox_bwrap="/nonexistent/bwrap")
    req = dataclasses.replace(
        request(settings, "mkdir output; echo admin > output/a", run_id=2), owner_is_admin=True
    )
    outcome = LocalRunner(settings, missing).execute(req)
    assert outcome.state == RunState.succeeded, outcome.reason


def test_the_readme_mapreduce_examples_publish_as_a_scheduled_job(settings, runner, public):
    """The README's aggregate jobs, run as a job over the published store, pass the guard."""
    from pathlib import Path

    from mapreduce import synthetic

    synthetic.generate(open_store(settings.published_url), 300_000, files=4)
    examples = Path(__file__).resolve().parents[2] / "mapreduce" / "examples"
    files = {f"ex/{p.name}": p.read_text() for p in examples.iterdir() if p.is_file()}
    command = (
        "set -e; mkdir -p output; "
        "python -m mapreduce.job ex/simple_counter.py -f ex/simple_counter_filter.json "
        "-o output/counts.txt; "
        "python -m mapreduce.job ex/osdistribution.py -f ex/osdistribution_filter.json "
        "-o output/os.txt; "
        "python -m mapreduce.job ex/histogram_aggregate.py "
        "-f ex/histogram_aggregate_filter.json -r 2 -o output/gc_ms.txt"
    )
    outcome = runner.execute(request(settings, command, files=files, timeout=300))
    assert outcome.state == RunState.succeeded, (outcome.reason, outcome.log_tail)
    assert sorted(outcome.published_files) == [
        "demo/data/counts.txt",
        "demo/data/gc_ms.txt",
        "demo/data/os.txt",
    ]
    assert public.get("demo/data/counts.txt").strip()


def test_a_long_lived_daemon_runs_in_the_sandbox_and_stop_ends_it(tmp_path):
    """What the analysis workers build on: a server with its own home and /etc/passwd entry,
    reachable on the host's network, gone (with its children) after stop()."""
    import urllib.request

    from scheduler import sandbox
    from tests.support.waiting import wait_for

    home = tmp_path / "home"
    home.mkdir()
    (home / "index.html").write_text("served from the sandbox")
    passwd = tmp_path / "passwd"
    passwd.write_text("analyst:x:65534:65534::/home/analyst:/bin/bash\n")
    sandbox.prepare_home(home)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = sandbox.SandboxSpec(
        home=home,
        home_target="/home/analyst",
        network=True,
        read_only=((str(passwd), "/etc/passwd"),),
    )
    script = f"(sleep 3031 &); whoami > who; exec python3 -m http.server {port} --bind 127.0.0.1"
    proc = sandbox.start(
        spec, ["bash", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/index.html"

        def serving() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.read() == b"served from the sandbox"
            except OSError:
                return False

        wait_for(serving, 30, "the sandbox's web server")
        assert (home / "who").read_text().strip() == "analyst"
        assert processes_running("sleep 3031")
    finally:
        sandbox.stop(proc, grace_seconds=1)
    wait_for(lambda: not processes_running("sleep 3031"), 30, "the sandbox's processes to end")
    assert proc.poll() is not None
