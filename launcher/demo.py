"""Demo submissions for `make run`, so the published store and dashboard are not empty.

Where the real Mozilla fixtures are beside the checkout (`../shared/fixtures`, or
TELEMETRY_SHARED_FIXTURES), their Histograms.json is seeded into the revision cache and the
real Firefox 23 submission is posted, with the real ESR 153 `main` ping (its revision is served
by the modern Histograms.json of the fixtures, as the tests do, since the exact file of that
revision is not among them). Otherwise a small generated v4 `main` ping is posted,
with a matching demo Histograms.json seeded under a revision that exists only locally.
The generated pings are marked as demo data by their build ID, `demo`, so they are published
under `main/Firefox/esr/153.7.0/demo.<date>...` and a filter on appBuildID tells them apart.
`launcher.runall` sends them once, to a new data directory only.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from histograms.revision_cache import RevisionCache
from pipeline.config import Settings, load_settings

log = logging.getLogger("launcher.demo")
DEMO_BUILD_ID = "demo"
ESR_REVISION_PATH = "releases/mozilla-esr153/a9effd9e521653405f0ffd311e8edf90bde92237"
DEMO_REVISION = "https://hg.mozilla.org/mozilla-central/rev/0000000000de"
DEMO_HISTOGRAMS = {
    "GC_MS": {
        "expires_in_version": "never",
        "kind": "exponential",
        "high": 10000,
        "n_buckets": 50,
        "description": "Time spent running JS GC (ms)",
    },
    "CYCLE_COLLECTOR": {
        "expires_in_version": "never",
        "kind": "exponential",
        "high": 10000,
        "n_buckets": 50,
        "description": "Time spent on one cycle collection (ms)",
    },
    "PLACES_PAGES_COUNT": {
        "expires_in_version": "never",
        "kind": "exponential",
        "low": 1000,
        "high": 150000,
        "n_buckets": 20,
        "description": "Number of pages",
    },
}


def fixtures_dir(settings: Settings | None = None) -> Path | None:
    """The shared fixtures (TELEMETRY_SHARED_FIXTURES, else ../shared/fixtures), if present."""
    configured = (settings or load_settings()).shared_fixtures
    candidate = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[2] / "shared" / "fixtures"
    )
    return candidate if candidate.is_dir() else None


def seed_revision(cache_dir: str, revision_url: str, histograms_json: bytes) -> None:
    """Place a Histograms.json where the RevisionCache looks for `revision_url`."""
    target = RevisionCache(cache_dir).path_for(revision_url)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(histograms_json)
    tmp.replace(target)


def demo_ping() -> tuple[str, bytes]:
    """A small, valid v4 main ping and the path Firefox would post it to."""
    doc_id = str(uuid.uuid4())
    ping = {
        "type": "main",
        "id": doc_id,
        "version": 4,
        "application": {
            "name": "Firefox",
            "version": "153.7.0",
            "channel": "esr",
            "buildId": DEMO_BUILD_ID,
            "architecture": "x86-64",
        },
        "environment": {"system": {"os": {"name": "Linux", "version": "6.1"}}},
        "payload": {
            "info": {"reason": "shutdown", "revision": DEMO_REVISION},
            "histograms": {
                "GC_MS": {
                    "bucket_count": 50,
                    "histogram_type": 0,
                    "sum": 120,
                    "range": [1, 10000],
                    "values": {"8": 0, "10": 3, "12": 4, "14": 0},
                },
            },
            "keyedHistograms": {},
        },
    }
    path = f"/submit/telemetry/{doc_id}/main/Firefox/153.7.0/esr/{DEMO_BUILD_ID}?v=4"
    return path, gzip.compress(json.dumps(ping).encode())


def _post(base_url: str, path: str, body: bytes) -> int:
    request = urllib.request.Request(
        base_url + path,
        data=body,
        method="POST",
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json; charset=UTF-8"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def send_demo_submissions(settings: Settings, ingest_url: str) -> int:
    """Post the demo submissions; returns how many were accepted."""
    submissions: list[tuple[str, bytes]] = []
    fixtures = fixtures_dir(settings)
    if fixtures is not None:
        source = fixtures / "histograms" / "releases"
        shutil.copytree(source, Path(settings.histogram_cache) / "releases", dirs_exist_ok=True)
        payload = fixtures / "payloads" / "idle-daily-firefox-23.0.1.json.gz"
        path = (fixtures / "payloads" / "idle-daily-firefox-23.0.1.path").read_text().strip()
        submissions.append((path, payload.read_bytes()))
        esr_ping = fixtures / "firefox" / "main-ping-esr153.json"
        modern = fixtures / "histograms" / "enterprise-firefox-72a855fe" / "Histograms.json"
        if esr_ping.is_file() and modern.is_file():
            target = Path(settings.histogram_cache) / ESR_REVISION_PATH / "Histograms.json"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(modern, target)
            ping = json.loads(esr_ping.read_text())
            build = ping["application"]["buildId"]
            esr_path = f"/submit/telemetry/{uuid.uuid4()}/main/Firefox/153.7.0/esr/{build}?v=4"
            submissions.append((esr_path, gzip.compress(json.dumps(ping).encode())))
    seed_revision(settings.histogram_cache, DEMO_REVISION, json.dumps(DEMO_HISTOGRAMS).encode())
    submissions.extend(demo_ping() for _ in range(3))
    accepted = sum(_post(ingest_url, path, body) == 200 for path, body in submissions)
    log.info(
        "sent %d demo submissions (%d accepted); they appear in %s after the next spool rotation",
        len(submissions),
        accepted,
        settings.published_url,
    )
    return accepted
