"""RevisionCache against a real local HTTP server standing in for hg.mozilla.org."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiohttp import web

from histograms.revision_cache import (
    RevisionCache,
    RevisionError,
    RevisionUnavailable,
    UnknownRevision,
    parse_revision_url,
)
from tests.support.servers import free_port

OLD = "releases/mozilla-release/a55c55edf302"
REV_URL = "http://hg.mozilla.org/releases/mozilla-release/rev/a55c55edf302"
HG_PATH = "toolkit/components/telemetry/Histograms.json"


class FakeHg:
    """A real aiohttp server in a thread; `answers[rev]` is a list of (status, body) consumed in order."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.answers: dict[str, list[tuple[int, bytes]]] = {}
        self.delay = 0.0
        # > 0: hold each request until this many have arrived (all in flight at once)
        self.in_flight_together = 0
        self._all_in: asyncio.Event | None = None
        self.requests: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        repo, rev = request.match_info["repo"], request.match_info["rev"]
        self.requests.append(f"{repo}/{rev}")
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow server, for the client's timeout
        if self.in_flight_together:
            self._all_in = self._all_in or asyncio.Event()
            if len(self.requests) >= self.in_flight_together:
                self._all_in.set()
            await asyncio.wait_for(self._all_in.wait(), 60)
        planned = self.answers.get(rev)
        if planned:
            status, body = planned.pop(0)
            return web.Response(status=status, body=body)
        if f"{repo}/{rev}" in self.files:
            return web.Response(body=self.files[f"{repo}/{rev}"], content_type="application/json")
        return web.Response(status=404, text="unknown revision")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get(r"/{repo:.+}/raw-file/{rev:[0-9a-f]+}/" + HG_PATH, self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> FakeHg:
        self._thread.start()
        assert self._ready.wait(30), "fake hg server did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@pytest.fixture
def old_file(shared_fixtures) -> bytes:
    return (shared_fixtures / "histograms" / OLD / "Histograms.json").read_bytes()


@pytest.fixture
def hg(old_file):
    server = FakeHg({OLD: old_file}).start()
    yield server
    server.stop()


def cache_for(tmp_path: Path, hg: FakeHg, **options) -> RevisionCache:
    options.setdefault("retries", 3)
    options.setdefault("timeout", 10)
    return RevisionCache(tmp_path / "cache", base_url=hg.url, **options)


def test_fetches_once_and_writes_the_cache_layout(tmp_path, hg, old_file):
    cache = cache_for(tmp_path, hg)
    definitions = cache.get(REV_URL)
    assert len(definitions) == 524
    stored = tmp_path / "cache" / OLD / "Histograms.json"
    assert stored.read_bytes() == old_file
    assert cache.get(REV_URL) is definitions
    assert hg.requests == [OLD]
    assert [p.name for p in stored.parent.iterdir()] == ["Histograms.json"]  # no temp files left


def test_http_and_https_revision_urls_resolve_to_the_same_cached_file(tmp_path, hg):
    cache = cache_for(tmp_path, hg)
    https_url = REV_URL.replace("http://", "https://")
    assert cache.path_for(REV_URL) == cache.path_for(https_url)
    assert cache.get(https_url) is cache.get(REV_URL)
    assert hg.requests == [OLD]
    fresh = cache_for(tmp_path, hg)  # a new process: finds the file written for the https URL
    assert len(fresh.get(REV_URL)) == 524 and hg.requests == [OLD]


def test_preseeded_directory_works_offline(shared_fixtures):
    cache = RevisionCache(
        shared_fixtures / "histograms", base_url="http://127.0.0.1:9", retries=1, timeout=2
    )
    assert len(cache.get(REV_URL)) == 524
    assert cache.fetches == 0


def test_unknown_revision_is_permanent_and_remembered_until_expiry(tmp_path, hg):
    now = [1000.0]
    cache = cache_for(tmp_path, hg, negative_ttl=300, clock=lambda: now[0])
    url = "https://hg.mozilla.org/mozilla-central/rev/0123456789ab"
    with pytest.raises(UnknownRevision, match="404"):
        cache.get(url)
    with pytest.raises(UnknownRevision, match="remembered"):
        cache.get(url)
    assert hg.requests == ["mozilla-central/0123456789ab"]
    now[0] += 301
    with pytest.raises(UnknownRevision):
        cache.get(url)
    assert len(hg.requests) == 2
    assert not (tmp_path / "cache" / "mozilla-central").exists()


def test_server_errors_are_retried_then_succeed(tmp_path, hg):
    hg.answers["a55c55edf302"] = [(503, b"busy"), (500, b"oops")]
    cache = cache_for(tmp_path, hg, retries=3)
    assert len(cache.get(REV_URL)) == 524
    assert hg.requests == [OLD] * 3


def test_persistent_server_errors_raise_retryable_error(tmp_path, hg):
    hg.answers["a55c55edf302"] = [(502, b"bad gateway")] * 5
    cache = cache_for(tmp_path, hg, retries=2)
    with pytest.raises(RevisionUnavailable, match="502") as caught:
        cache.get(REV_URL)
    assert isinstance(caught.value, RevisionError)
    assert len(hg.requests) == 2
    assert not (tmp_path / "cache" / OLD).exists()


def test_unreachable_server_raises_retryable_error(tmp_path):
    cache = RevisionCache(
        tmp_path, base_url=f"http://127.0.0.1:{free_port()}", retries=2, timeout=5
    )
    with pytest.raises(RevisionUnavailable, match="cannot reach"):
        cache.get(REV_URL)
    assert cache.fetches == 2


def test_answer_cut_short_is_retryable(tmp_path):
    """A server that promises more bytes than it sends (http.client.IncompleteRead)."""
    import http.server

    class CutShort(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b'{"A_HISTOGRAM": ')

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cache = RevisionCache(
            tmp_path, base_url=f"http://127.0.0.1:{server.server_port}", retries=2, timeout=5
        )
        with pytest.raises(RevisionUnavailable, match="broken answer"):
            cache.get(REV_URL)
        assert cache.fetches == 2
    finally:
        server.shutdown()
        server.server_close()


def test_slow_server_times_out_as_retryable(tmp_path, hg):
    hg.delay = 3
    cache = cache_for(tmp_path, hg, retries=1, timeout=0.5)
    with pytest.raises(RevisionUnavailable):
        cache.get(REV_URL)


def test_garbage_body_is_not_cached(tmp_path, hg):
    hg.answers["a55c55edf302"] = [(200, b"<html>not json</html>")]
    cache = cache_for(tmp_path, hg, negative_ttl=0)
    with pytest.raises(RevisionUnavailable, match="unusable"):
        cache.get(REV_URL)
    assert not (tmp_path / "cache" / OLD / "Histograms.json").exists()
    assert len(cache.get(REV_URL)) == 524  # the failure was not remembered (ttl 0): fetched again


def test_corrupt_cached_file_is_fetched_again(tmp_path, hg, old_file):
    stored = tmp_path / "cache" / OLD / "Histograms.json"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b'{"trunc')
    assert len(cache_for(tmp_path, hg).get(REV_URL)) == 524
    assert stored.read_bytes() == old_file


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hg.mozilla.org/releases/mozilla-release/rev/a55c55edf302",
        "http://hg.mozilla.org/rev/a55c55edf302",
        "http://hg.mozilla.org/releases/mozilla-release/rev/xyz",
        "http://hg.mozilla.org/releases/../../etc/rev/a55c55edf302",
        "not a url",
    ],
)
def test_malformed_revision_url_is_unknown(tmp_path, hg, url):
    with pytest.raises(UnknownRevision, match="revision URL|'\\.\\.'"):
        cache_for(tmp_path, hg).get(url)
    assert hg.requests == []


def test_parse_revision_url_normalises_case():
    assert parse_revision_url(
        "https://hg.mozilla.org/releases/mozilla-esr153/rev/A9EFFD9E5216"
    ) == (
        "releases/mozilla-esr153",
        "a9effd9e5216",
    )


def test_memory_cache_is_bounded(tmp_path, hg, old_file):
    revs = ["aaaaaa0001", "aaaaaa0002", "aaaaaa0003"]
    for rev in revs:
        hg.files[f"mozilla-central/{rev}"] = old_file
    cache = cache_for(tmp_path, hg, memory_entries=2)
    first = cache.get(f"https://hg.mozilla.org/mozilla-central/rev/{revs[0]}")
    for rev in revs[1:]:
        cache.get(f"https://hg.mozilla.org/mozilla-central/rev/{rev}")
    again = cache.get(f"https://hg.mozilla.org/mozilla-central/rev/{revs[0]}")
    assert again is not first  # evicted from memory, re-read from disk (not refetched)
    assert len(hg.requests) == 3


def test_concurrent_processes_leave_one_valid_file(tmp_path, hg, old_file):
    hg.in_flight_together = 4  # no answer before all four processes are fetching
    script = (
        "import sys; from histograms.revision_cache import RevisionCache; "
        f"print(len(RevisionCache(sys.argv[1], base_url={hg.url!r}, timeout=30).get({REV_URL!r})))"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "cache")],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [w.communicate(timeout=120)[0].strip() for w in workers]
    assert outputs == ["524"] * 4
    folder = tmp_path / "cache" / OLD
    assert [p.name for p in folder.iterdir()] == ["Histograms.json"]
    assert json.loads((folder / "Histograms.json").read_bytes()) == json.loads(old_file)


def test_from_settings_uses_the_configured_cache_and_server(settings):
    cache = RevisionCache.from_settings(settings)
    assert cache.cache_dir == Path(settings.histogram_cache)
    assert cache.base_url == settings.hg_base_url


def test_unwritable_cache_still_returns_definitions_and_warns(tmp_path, hg, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    cache = RevisionCache(blocker, base_url=hg.url)
    with caplog.at_level("WARNING", logger="histograms.revision_cache"):
        assert len(cache.get(REV_URL)) == 524
    assert "cannot store Histograms.json" in caplog.text
    assert len(cache.get(REV_URL)) == 524 and hg.requests == [OLD]
