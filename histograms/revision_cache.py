"""Histograms.json per revision: fetched once over HTTP, kept on disk and in memory.

Every payload names the revision of Histograms.json it was recorded with
(`http(s)://<host>/<repo path>/rev/<hex>`). Conversion needs that exact file, and there are few
revisions but very many payloads, so each revision is fetched once from
`<base>/<repo path>/raw-file/<rev>/toolkit/components/telemetry/Histograms.json`, written to
`<cache>/<repo path>/<rev>/Histograms.json` (atomically, so concurrent workers leave one
valid file), and parsed definitions stay in a bounded in-memory LRU.

The scheme and host of the revision URL do not matter: `http://` and `https://` URLs of the
same revision resolve to the same cached file (an outage once came from treating them apart).

Failures are remembered for `negative_ttl` seconds so that a burst of payloads from a broken
revision does not hammer the server. Callers distinguish:

* `UnknownRevision`: the URL is malformed or the server says 404 — permanent, park the record.
* `RevisionUnavailable`: network error, timeout, 5xx, unreadable body — retry later.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import tenacity

from histograms.definitions import Definitions, load_definitions
from histograms.errors import DefinitionError, RevisionError, RevisionUnavailable, UnknownRevision

log = logging.getLogger(__name__)

HISTOGRAMS_PATH = "toolkit/components/telemetry/Histograms.json"

_REVISION_URL = re.compile(
    r"^https?://[^/?#]+/(?P<repo>[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*)/rev/(?P<rev>[0-9a-fA-F]{6,40})/?$"
)


class _Transient(Exception):
    """Internal: one failed attempt worth retrying."""


def parse_revision_url(revision_url: str) -> tuple[str, str]:
    """(repo path, revision hex in lower case); raises UnknownRevision when malformed."""
    match = _REVISION_URL.match(revision_url.strip()) if isinstance(revision_url, str) else None
    if match is None:
        raise UnknownRevision(
            str(revision_url),
            "not a revision URL of the form http(s)://<host>/<repo path>/rev/<hex>",
        )
    repo = match.group("repo")
    if any(part in (".", "..") for part in repo.split("/")):
        raise UnknownRevision(revision_url, "repository path may not contain '.' or '..' segments")
    return repo, match.group("rev").lower()


class RevisionCache:
    """Definitions by revision URL, from memory, then disk, then the Mercurial server."""

    def __init__(
        self,
        cache_dir: str | Path,
        base_url: str = "https://hg.mozilla.org",
        timeout: float = 10,
        retries: int = 3,
        memory_entries: int = 32,
        negative_ttl: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = max(1, retries)
        self.memory_entries = max(1, memory_entries)
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._memory: OrderedDict[tuple[str, str], Definitions] = OrderedDict()
        self._failures: dict[tuple[str, str], tuple[float, RevisionError]] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # HTTP attempts made; tests and logs use it

    @classmethod
    def from_settings(cls, settings) -> RevisionCache:
        """The cache a service uses: TELEMETRY_HISTOGRAM_CACHE and TELEMETRY_HG_BASE_URL."""
        return cls(settings.histogram_cache, base_url=settings.hg_base_url)

    def path_for(self, revision_url: str) -> Path:
        repo, rev = parse_revision_url(revision_url)
        return self.cache_dir / repo / rev / "Histograms.json"

    def get(self, revision_url: str) -> Definitions:
        """Definitions for the revision; raises UnknownRevision or RevisionUnavailable."""
        repo, rev = parse_revision_url(revision_url)
        key = (repo, rev)
        with self._lock:
            cached = self._memory.get(key)
            if cached is not None:
                self._memory.move_to_end(key)
                return cached
            failure = self._failures.get(key)
            if failure is not None:
                expires, error = failure
                if self._clock() < expires:
                    raise type(error)(revision_url, f"{error.problem} (remembered failure)")
                del self._failures[key]
        try:
            definitions = self._from_disk(key) or self._fetch(key, revision_url)
        except RevisionError as error:
            with self._lock:
                self._failures[key] = (self._clock() + self.negative_ttl, error)
            raise
        with self._lock:
            self._memory[key] = definitions
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_entries:
                self._memory.popitem(last=False)
        return definitions

    def _file(self, key: tuple[str, str]) -> Path:
        return self.cache_dir / key[0] / key[1] / "Histograms.json"

    def _from_disk(self, key: tuple[str, str]) -> Definitions | None:
        path = self._file(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read cached %s (%s); fetching it again", path, exc)
            return None
        try:
            return load_definitions(data)
        except DefinitionError as exc:
            log.warning("cached %s is unusable (%s); fetching it again", path, exc)
            return None

    def _fetch(self, key: tuple[str, str], revision_url: str) -> Definitions:
        repo, rev = key
        url = f"{self.base_url}/{repo}/raw-file/{rev}/{HISTOGRAMS_PATH}"

        @tenacity.retry(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self.retries),
            wait=tenacity.wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        )
        def attempt() -> bytes:
            self.fetches += 1
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                    return response.read()
            except urllib.error.HTTPError as exc:
                if exc.code in (404, 410):
                    raise UnknownRevision(
                        revision_url, f"{url} answered {exc.code}: no such revision"
                    ) from exc
                raise _Transient(f"{url} answered {exc.code}") from exc
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise _Transient(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from exc
            except http.client.HTTPException as exc:  # a response cut short, a bad status line
                raise _Transient(f"broken answer from {url}: {exc!r}") from exc

        try:
            data = attempt()
        except _Transient as exc:
            raise RevisionUnavailable(
                revision_url, f"{exc} (after {self.retries} attempts)"
            ) from exc
        try:
            definitions = load_definitions(data)
        except DefinitionError as exc:
            raise RevisionUnavailable(
                revision_url, f"{url} returned an unusable Histograms.json: {exc}"
            ) from exc
        try:
            self._write_atomically(self._file(key), data)
        except OSError as exc:  # still usable from memory; the next process fetches again
            log.warning(
                "cannot store Histograms.json for %s/%s under %s: %s",
                repo,
                rev,
                self.cache_dir,
                exc,
            )
        log.info(
            "fetched Histograms.json for %s/%s (%d definitions, %d bad)",
            repo,
            rev,
            len(definitions),
            len(definitions.errors),
        )
        return definitions

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        """Write to a temporary file beside the target, then rename: readers see all or nothing."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".Histograms.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
