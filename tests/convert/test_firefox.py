"""Real client: headless Debian firefox-esr sends its pings to a real ingest server; after
`python -m convert --drain` its `main` ping is found converted in the published store.

Firefox is quit through Marionette (its JSON-over-TCP protocol, spoken here directly) so that
the shutdown pings are sent by pingsender. The modern Histograms.json is pre-seeded in a
temporary cache as the revision the ping names.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.records import iter_records
from pipeline.stores import open_store
from tests.support.convert import IngestServer, read_all, run_convert
from tests.support.servers import free_port
from tests.support.waiting import wait_for

FIREFOX = shutil.which("firefox-esr")
TIMEOUT = 120

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        FIREFOX is None, reason="firefox-esr is not installed (make setup installs it)"
    ),
]


class Marionette:
    """Just enough of Marionette's protocol: `<length>:<json>` frames, [0, id, name, params]."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.sock.settimeout(timeout)
        self.buffer = b""
        self.next_id = 1
        self.hello = self._read()

    def _read(self) -> object:
        while b":" not in self.buffer:
            self._fill()
        length, _, rest = self.buffer.partition(b":")
        size = int(length)
        self.buffer = rest
        while len(self.buffer) < size:
            self._fill()
        frame, self.buffer = self.buffer[:size], self.buffer[size:]
        return json.loads(frame)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Marionette closed the connection")
        self.buffer += chunk

    def command(self, name: str, params: dict, timeout: float = TIMEOUT) -> object:
        msg_id = self.next_id
        self.next_id += 1
        data = json.dumps([0, msg_id, name, params]).encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data)
        self.sock.settimeout(timeout)
        while True:
            reply = self._read()
            if isinstance(reply, list) and reply[0] == 1 and reply[1] == msg_id:
                if reply[2]:
                    raise RuntimeError(f"{name} failed: {reply[2]}")
                return reply[3]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def write_profile(profile: Path, user_js: str, ingest_port: int, marionette_port: int) -> None:
    profile.mkdir(parents=True)
    text = re.sub(r'"http://localhost:\d+"', f'"http://localhost:{ingest_port}"', user_js)
    text = re.sub(
        r'"telemetry.fog.test.localhost_port", \d+',
        f'"telemetry.fog.test.localhost_port", {ingest_port}',
        text,
    )
    text = re.sub(r'"marionette.port", \d+', f'"marionette.port", {marionette_port}', text)
    assert f"localhost:{ingest_port}" in text and str(marionette_port) in text
    (profile / "user.js").write_text(text)


def test_firefox_main_ping_is_published_converted(data_dir, tmp_path, shared_fixtures, monkeypatch):
    cache = tmp_path / "histogram_cache"
    env = {"TELEMETRY_HISTOGRAM_CACHE": str(cache), "TELEMETRY_HG_BASE_URL": "http://127.0.0.1:9"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ingest_log = tmp_path / "ingest.log"
    server = IngestServer(env, ingest_log).start()
    profile = tmp_path / "profile"
    marionette_port = free_port()
    write_profile(
        profile, (shared_fixtures / "firefox/user.js").read_text(), server.port, marionette_port
    )
    firefox_env = {
        **os.environ,
        "MOZ_CRASHREPORTER_DISABLE": "1",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
    }
    firefox_log = open(tmp_path / "firefox.log", "wb")
    firefox = subprocess.Popen(
        [
            FIREFOX,
            "--headless",
            "--marionette",
            "--no-remote",
            "--profile",
            str(profile),
            "about:blank",
        ],
        env=firefox_env,
        stdout=firefox_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        marionette = Marionette(marionette_port)
        # Headless ESR 153 on a machine without GPU may never answer NewSession (its first
        # window does not finish painting); Marionette:Quit works either way, so do not wait long.
        with contextlib.suppress(TimeoutError):
            marionette.command(
                "WebDriver:NewSession", {"capabilities": {"alwaysMatch": {}}}, timeout=20
            )
        # Let telemetry start up and send its early pings before quitting (initDelay is 1 s).
        with contextlib.suppress(AssertionError):  # quit after 60 s even without a ping
            wait_for(lambda: b"/submit/" in ingest_log.read_bytes(), 60, "an early ping")
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            marionette.command("Marionette:Quit", {"flags": ["eAttemptQuit"]})
        marionette.close()
        firefox.wait(TIMEOUT)
        # pingsender sends the shutdown `main` ping after Firefox has gone.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: b"/main/" in ingest_log.read_bytes(), TIMEOUT, "the main ping")
        assert b"/main/" in ingest_log.read_bytes(), (
            "no main ping reached ingest:\n" + ingest_log.read_text()[-3000:]
        )
    finally:
        if firefox.poll() is None:
            os.killpg(firefox.pid, signal.SIGKILL)
            firefox.wait(30)
        firefox_log.close()
        server.stop()

    settings = load_settings()
    revision = main_ping_revision(open_store(settings.incoming_url))
    assert revision, "the main ping names no Histograms.json revision"
    repo_rev = revision.split("://", 1)[1].split("/", 1)[1].replace("/rev/", "/")
    (cache / repo_rev).mkdir(parents=True)
    shutil.copy(
        shared_fixtures / "histograms/enterprise-firefox-72a855fe/Histograms.json", cache / repo_rev
    )

    result = run_convert(env, "--drain")
    assert result.returncode == 0, result.stderr[-3000:]
    published = read_all(open_store(settings.published_url))
    main_keys = [k for k in published if k.startswith("main/Firefox/esr/")]
    assert main_keys, f"no main partition in {sorted(published)}"
    docs = [json.loads(line.split(b"\t", 1)[1]) for key in main_keys for line in published[key]]
    histograms = [doc["payload"]["histograms"] for doc in docs if doc.get("type") == "main"]
    assert histograms and any(histograms), "the main ping has no converted histograms"
    for section in histograms:
        assert all(isinstance(value, list) and len(value) > 5 for value in section.values())


def main_ping_revision(incoming) -> str | None:
    for info in incoming.list():
        for record in iter_records(io.BytesIO(incoming.get(info.key)), info.key):
            if "/main/" not in record.path:
                continue
            body = record.body
            if body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            return json.loads(body)["payload"]["info"]["revision"]
    return None
