"""Helpers shared by the convert tests (no tests here): batches, stand-in converter, readers."""

from __future__ import annotations

import functools
import gzip
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import lz4.frame

from convert.histogram_tools import HistogramTools
from convert.worker import ConvertWorker, WorkerOptions
from pipeline.records import encode_record
from pipeline.stores.base import BlobStore

REPO = Path(__file__).resolve().parents[2]
RECEIVED_MS = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
STUB_REVISION = "https://hg.example/releases/stub/rev/abc123"


class StubUnknown(Exception):
    pass


class StubUnavailable(Exception):
    pass


class StubResult:
    def __init__(self, payload: dict, invalid: list, unknown: list) -> None:
        self.payload, self.invalid, self.unknown = payload, invalid, unknown


def _stub_convert(payload: dict, definitions: set[str]) -> StubResult:
    """A tiny converter: a histogram is valid when its `values` is an object of int counts."""
    histograms = payload["histograms"]
    if not isinstance(histograms, dict):
        return StubResult(
            dict(payload, histograms={}), [("*", "histograms is not a JSON object")], []
        )
    out, invalid, unknown = {}, [], []
    for name, hist in histograms.items():
        if name not in definitions:
            unknown.append(name)
        elif (
            isinstance(hist, dict)
            and isinstance(hist.get("values"), dict)
            and all(isinstance(v, int) for v in hist["values"].values())
        ):
            out[name] = [sum(hist["values"].values())]
        else:
            invalid.append((name, "values must be integer counts"))
    converted = dict(payload, histograms=out, ver=2)
    return StubResult(converted, invalid, unknown)


def stub_tools(available: bool = True) -> HistogramTools:
    def definitions(revision: str):
        if revision != STUB_REVISION:
            raise StubUnknown(revision)
        if not available:
            raise StubUnavailable(revision)
        return {"A", "B"}

    def revision_of(payload: dict):
        info = payload.get("info")
        return info.get("revision") if isinstance(info, dict) else None

    return HistogramTools(
        revision_of=revision_of,
        definitions=definitions,
        convert_payload=_stub_convert,
        unknown_revision=(StubUnknown,),
        revision_unavailable=(StubUnavailable,),
        loads=json.loads,
        dumps=lambda obj: json.dumps(obj, sort_keys=True),
    )


def v1_payload(**info: object) -> dict:
    base = {
        "reason": "idle-daily",
        "appName": "Firefox",
        "appVersion": "23.0.1",
        "appUpdateChannel": "release",
        "appBuildID": "20130814063812",
        "revision": STUB_REVISION,
    }
    base.update(info)
    return {"ver": 1, "info": base, "histograms": {"A": {"values": {"0": 1, "1": 2}}}}


def telemetry_path(
    doc_id: str | None = None,
    dims: Iterable[str] = ("idle-daily", "Firefox", "23.0.1", "release", "20130814063812"),
) -> str:
    return "/".join(["/submit/telemetry", doc_id or str(uuid.uuid4()), *dims])


def gz(obj: object) -> bytes:
    return gzip.compress(json.dumps(obj).encode() if not isinstance(obj, bytes) else obj)


def make_batch(
    records: Iterable[tuple[str, Mapping[str, str], bytes]], received_ms: int = RECEIVED_MS
) -> bytes:
    return b"".join(
        encode_record(received_ms + i, path, headers, body)
        for i, (path, headers, body) in enumerate(records)
    )


def read_lz4_lines(store: BlobStore, key: str) -> list[bytes]:
    return lz4.frame.decompress(store.get(key)).splitlines()


def read_all(store: BlobStore, prefix: str = "") -> dict[str, list[bytes]]:
    """Every object under `prefix` as its decompressed lines (skipping the incoming side)."""
    return {info.key: read_lz4_lines(store, info.key) for info in store.list(prefix)}


def error_entries(store: BlobStore) -> list[dict]:
    return [json.loads(line) for key, lines in read_all(store, "errors/").items() for line in lines]


def run_convert(
    env: Mapping[str, str], *args: str, timeout: float = 180, **popen: object
) -> subprocess.CompletedProcess:
    """`python -m convert ARGS` with `env` added; `popen` for e.g. a `preexec_fn` limit."""
    full_env = dict(os.environ)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "convert", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


# -- real ingest server and histogram cache ------------------------------------------------

ESR_REVISION_PATH = "releases/mozilla-esr153/a9effd9e521653405f0ffd311e8edf90bde92237"
IDLE_DAILY_REVISION_PATH = "releases/mozilla-release/a55c55edf302"


def seed_histogram_cache(shared_fixtures: Path, cache: Path) -> Path:
    """A RevisionCache directory holding the fixtures' revisions (copied into a tmp dir)."""
    import shutil

    release = cache / IDLE_DAILY_REVISION_PATH
    release.mkdir(parents=True, exist_ok=True)
    shutil.copy(
        shared_fixtures / "histograms" / IDLE_DAILY_REVISION_PATH / "Histograms.json", release
    )
    esr = cache / ESR_REVISION_PATH
    esr.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_fixtures / "histograms/enterprise-firefox-72a855fe/Histograms.json", esr)
    return cache


class IngestServer:
    """`python -m ingest` as a subprocess on a free port, stopped by pid (SIGTERM drains it)."""

    def __init__(self, env: Mapping[str, str], log_path: Path, host: str = "127.0.0.1") -> None:
        from tests.support.servers import free_port

        self.port = free_port()
        self.host = host
        self.env = dict(os.environ)
        self.env.update(env)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IngestServer:
        from tests.support.servers import wait_for_port

        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest", "--host", self.host, "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, timeout=60)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"ingest did not start: {self.log_path.read_text()[-2000:]}"
            ) from None
        return self

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> int:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.base + path, data=body, method="POST", headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def stop(self, timeout: float = 60) -> None:
        import signal

        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if getattr(self, "_log", None):
            self._log.close()


class HgStub:
    """A real HTTP server standing in for hg.mozilla.org: 503 for paths containing
    `unavailable`, 404 for everything else (the tests pre-seed the revisions they need)."""

    def __init__(self) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(503 if "unavailable" in self.path else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def maximal_record(limit: int = 8 * 1024 * 1024) -> tuple[str, dict[str, str], bytes]:
    """A record as small as gzip allows (~8 KB) that decompresses to just under `limit`:
    the memory amplification an unauthenticated client gets from the decompression limit."""
    path = f"/submit/telemetry/{uuid.uuid4()}/main/Firefox/153.0/release/20260101000000"
    return path, {"Content-Encoding": "gzip"}, _maximal_body(limit)


@functools.lru_cache(maxsize=4)
def _maximal_body(limit: int) -> bytes:
    doc = {"type": "main", "payload": {"info": {}}, "pad": ""}
    doc["pad"] = "a" * (limit - len(json.dumps(doc)) - 16)
    return gzip.compress(json.dumps(doc).encode(), 9)


def make_worker(settings, available=True, **options) -> ConvertWorker:
    opts = WorkerOptions(drain=True, **options)
    return ConvertWorker(settings, opts, tools=stub_tools(available))


def submit(worker: ConvertWorker, key: str, data: bytes, **extra) -> None:
    worker.incoming.put(key, data)
    worker.queue.send(json.dumps({"key": key, "records": 0, "bytes": len(data), **extra}))
