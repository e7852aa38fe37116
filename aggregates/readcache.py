"""The dashboard's read side: day files from the public store, loaded into a local SQLite cache.

The public store keeps the durable, downloadable aggregates (`<job>/data/index.json` and
`days/*.json.gz`); this cache only makes them quick to query. `sync()` compares the index with
what the cache holds and (re)loads changed dates as whole days, so a recomputed date replaces
its rows. Deleting the cache file is always safe: it is rebuilt from the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aggregates import stats
from aggregates.dayfile import INDEX_NAME, day_path, decode_day, decode_index
from aggregates.errors import QueryError
from aggregates.extract import GROUP_DIMENSIONS
from pipeline.errors import ObjectNotFound
from pipeline.layout import sort_key
from pipeline.stores.base import BlobStore

log = logging.getLogger(__name__)

#: Dimensions a query may filter on besides metric, channel and version.
FILTER_DIMENSIONS = ("build_id", "reason", "application", "os", "os_version", "architecture")
SCHEMA = """
CREATE TABLE IF NOT EXISTS days (date TEXT PRIMARY KEY, computed_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layouts (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, buckets TEXT NOT NULL, UNIQUE (kind, buckets));
CREATE TABLE IF NOT EXISTS metrics (name TEXT PRIMARY KEY, description TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dim_values (
    dimension TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (dimension, value)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channel_versions (
    channel TEXT NOT NULL, version TEXT NOT NULL, PRIMARY KEY (channel, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rows (
    date TEXT NOT NULL, channel TEXT NOT NULL, version TEXT NOT NULL, build_id TEXT NOT NULL,
    reason TEXT NOT NULL, application TEXT NOT NULL, os TEXT NOT NULL, os_version TEXT NOT NULL,
    architecture TEXT NOT NULL, metric TEXT NOT NULL, layout INTEGER NOT NULL,
    submissions INTEGER NOT NULL, sum REAL NOT NULL, counts TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rows_by_metric ON rows (metric, channel, version);
CREATE INDEX IF NOT EXISTS rows_by_date ON rows (date);
"""


class AggregateCache:
    """Query the aggregates of one job's published output through a local SQLite file."""

    def __init__(
        self,
        public: BlobStore,
        cache_path: str | Path,
        job_name: str,
        min_sync_seconds: float = 10.0,
    ) -> None:
        self.public = public
        self.path = Path(cache_path)
        self.job_name = job_name
        self.min_sync_seconds = min_sync_seconds
        self._lock = threading.Lock()
        self._synced_at = -1e18
        self._refresher: threading.Thread | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
            db.commit()
        finally:
            db.close()

    # -- loading ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the cache up to date before a query without making the query wait for it.

        While the cache is empty (a new dashboard) the first query loads synchronously, so it
        shows data; afterwards a due check runs in a background thread, because loading a big
        day takes seconds and no request should pay that. `min_sync_seconds <= 0` (tests)
        always loads synchronously.
        """
        if self.min_sync_seconds <= 0 or self._empty():
            self.sync()
            return
        if time.monotonic() - self._synced_at < self.min_sync_seconds:
            return
        if self._refresher is None or not self._refresher.is_alive():
            self._refresher = threading.Thread(target=self._sync_logged, daemon=True)
            self._refresher.start()

    def _sync_logged(self) -> None:
        try:
            self.sync()
        except Exception:  # noqa: BLE001 - a background refresh must not die silently
            log.exception("refreshing the aggregates cache from %s failed", self.public)

    def _empty(self) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM days LIMIT 1").fetchone() is None

    @contextlib.contextmanager
    def _loading(self) -> Iterator[None]:
        """One loader at a time per cache file: the dashboard's gunicorn workers share it, and
        without this each of them loaded the same days (minutes of CPU for a new dashboard).
        Whoever waited then finds the days loaded and has nothing to do."""
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def sync(self, force: bool = False) -> list[str]:
        """Load every date whose published aggregates are newer than the cache's; returns them."""
        with self._loading():
            if not force and time.monotonic() - self._synced_at < self.min_sync_seconds:
                return []
            self._synced_at = time.monotonic()
            try:
                index = decode_index(self.public.get(f"{self.job_name}/data/{INDEX_NAME}"))
            except ObjectNotFound:
                index = decode_index(None)
            with self._connect() as db:
                have = dict(db.execute("SELECT date, computed_at FROM days"))
            changed = [
                date
                for date, entry in sorted(index["days"].items())
                if have.get(date) != entry.get("computed_at")
            ]
            for date in changed:
                key = f"{self.job_name}/data/{day_path(date)}"
                try:
                    document = decode_day(self.public.get(key))
                except (ObjectNotFound, ValueError, OSError) as exc:
                    log.warning("cannot load aggregates of %s from %s: %s", date, key, exc)
                    continue
                self._load_day(document)
            gone = set(have) - set(index["days"])
            if gone:
                with self._connect() as db:
                    for date in gone:
                        db.execute("DELETE FROM rows WHERE date = ?", (date,))
                        db.execute("DELETE FROM days WHERE date = ?", (date,))
            return changed

    def _load_day(self, document: Mapping[str, Any]) -> None:
        date = document["date"]
        dims = document["dimensions"]
        if list(dims) != list(GROUP_DIMENSIONS):
            raise ValueError(f"day file {date} has dimensions {dims}, expected {GROUP_DIMENSIONS}")
        with self._connect() as db:
            layout_ids = []
            for layout in document["layouts"]:
                buckets = json.dumps(layout["buckets"], separators=(",", ":"))
                db.execute(
                    "INSERT OR IGNORE INTO layouts (kind, buckets) VALUES (?, ?)",
                    (layout["kind"], buckets),
                )
                (layout_id,) = db.execute(
                    "SELECT id FROM layouts WHERE kind = ? AND buckets = ?",
                    (layout["kind"], buckets),
                ).fetchone()
                layout_ids.append(layout_id)
            db.execute("DELETE FROM rows WHERE date = ?", (date,))
            n = len(dims)
            db.executemany(
                "INSERT INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        date,
                        *row[:n],
                        row[n],
                        layout_ids[row[n + 1]],
                        row[n + 2],
                        row[n + 3],
                        json.dumps(row[n + 4], separators=(",", ":")),
                    )
                    for row in document["rows"]
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?)",
                document["descriptions"].items(),
            )
            metrics = {row[n] for row in document["rows"]}
            db.executemany("INSERT OR IGNORE INTO metrics VALUES (?, '')", ((m,) for m in metrics))
            values = {(d, row[i]) for row in document["rows"] for i, d in enumerate(dims)}
            db.executemany("INSERT OR IGNORE INTO dim_values VALUES (?, ?)", values)
            db.executemany(
                "INSERT OR IGNORE INTO channel_versions VALUES (?, ?)",
                {(row[0], row[1]) for row in document["rows"]},
            )
            db.execute("INSERT OR REPLACE INTO days VALUES (?, ?)", (date, document["computed_at"]))

    # -- queries ---------------------------------------------------------------------------

    def filters(self) -> dict[str, Any]:
        """Channels, their versions, every dimension's values, metrics with descriptions."""
        self.refresh()
        with self._connect() as db:
            versions: dict[str, list[str]] = {}
            for channel, version in db.execute("SELECT channel, version FROM channel_versions"):
                versions.setdefault(channel, []).append(version)
            dimensions: dict[str, list[str]] = {}
            for dimension, value in db.execute("SELECT dimension, value FROM dim_values"):
                dimensions.setdefault(dimension, []).append(value)
            metrics = [
                {"name": name, "description": description}
                for name, description in db.execute(
                    "SELECT name, description FROM metrics ORDER BY name"
                )
            ]
            dates = [d for (d,) in db.execute("SELECT date FROM days ORDER BY date")]
            (updated,) = db.execute("SELECT MAX(computed_at) FROM days").fetchone()
        for values in (*versions.values(), *dimensions.values()):
            values.sort(key=sort_key)
        return {
            "channels": sorted(versions),
            "versions": versions,
            "dimensions": {d: dimensions.get(d, []) for d in FILTER_DIMENSIONS},
            "dates": dates,
            "updated": updated,
            "metrics": metrics,
        }

    def _rows(
        self,
        metric: str,
        channel: str,
        versions: Sequence[str] | None,
        where: Mapping[str, Sequence[str]],
        dates: Sequence[str] | None,
        columns: str,
    ) -> list[tuple]:
        sql = [f"SELECT {columns} FROM rows WHERE metric = ? AND channel = ?"]
        params: list[Any] = [metric, channel]
        if versions is not None:
            sql.append(f"AND version IN ({','.join('?' * len(versions))})")
            params += versions
        for dimension, values in where.items():
            if dimension not in FILTER_DIMENSIONS:
                raise QueryError(f"unknown dimension {dimension!r}")
            sql.append(f"AND {dimension} IN ({','.join('?' * len(values))})")
            params += values
        if dates is not None:
            sql.append(f"AND date IN ({','.join('?' * len(dates))})")
            params += dates
        with self._connect() as db:
            return db.execute(" ".join(sql), params).fetchall()

    def _layouts(self, ids: set[int]) -> dict[int, tuple[str, list[int]]]:
        with self._connect() as db:
            return {
                i: (kind, json.loads(buckets))
                for i, kind, buckets in db.execute(
                    f"SELECT id, kind, buckets FROM layouts WHERE id IN ({','.join('?' * len(ids))})",
                    list(ids),
                )
            }

    def description(self, metric: str) -> str:
        with self._connect() as db:
            found = db.execute("SELECT description FROM metrics WHERE name = ?", (metric,))
            row = found.fetchone()
        return row[0] if row else ""

    def versions_between(self, channel: str, low: str | None, high: str | None) -> list[str]:
        with self._connect() as db:
            known = [
                v
                for (v,) in db.execute(
                    "SELECT version FROM channel_versions WHERE channel = ?", (channel,)
                )
            ]
        return [
            v
            for v in known
            if (low is None or sort_key(v) >= sort_key(low))
            and (high is None or sort_key(v) <= sort_key(high))
        ]

    def histogram(
        self,
        metric: str,
        channel: str,
        versions: Sequence[str],
        where: Mapping[str, Sequence[str]] | None = None,
        dates: Sequence[str] | None = None,
    ) -> dict[str, Any] | None:
        """The summed histogram of a selection, or None when nothing matches."""
        self.refresh()
        rows = self._rows(
            metric, channel, versions, where or {}, dates, "layout, submissions, sum, counts"
        )
        if not rows:
            return None
        return self._summarise(metric, rows)

    def _summarise(self, metric: str, rows: Sequence[tuple]) -> dict[str, Any]:
        by_layout: dict[int, list] = {}
        for layout, submissions, total, counts in rows:
            entry = by_layout.setdefault(layout, [0, 0.0, []])
            entry[0] += submissions
            entry[1] += total
            entry[2].append(json.loads(counts))
        main = max(by_layout, key=lambda i: by_layout[i][0])
        kind, buckets = self._layouts({main})[main]
        submissions, total, vectors = by_layout[main]
        counts = [sum(column) for column in zip(*vectors, strict=True)]
        other = sum(entry[0] for layout, entry in by_layout.items() if layout != main)
        return {
            "metric": metric,
            "kind": kind,
            "buckets": buckets,
            "counts": counts,
            "submissions": submissions,
            "sum": total,
            "mean": stats.mean(buckets, counts, total),
            "percentiles": stats.percentiles(buckets, counts),
            "other_layout_submissions": other,
        }

    def evolution(
        self,
        metric: str,
        channel: str,
        versions: Sequence[str] | None,
        by: str = "build_id",
        where: Mapping[str, Sequence[str]] | None = None,
        dates: Sequence[str] | None = None,
    ) -> dict[str, Any] | None:
        """One point per build ID or submission date: submissions, mean, percentiles, hints."""
        if by not in ("build_id", "submission_date"):
            raise QueryError("by must be build_id or submission_date")
        self.refresh()
        column = "build_id" if by == "build_id" else "date"
        rows = self._rows(
            metric,
            channel,
            versions,
            where or {},
            dates,
            f"{column}, layout, submissions, sum, counts",
        )
        if not rows:
            return None
        groups: dict[str, list[tuple]] = {}
        for group, *rest in rows:
            groups.setdefault(group, []).append(tuple(rest))
        points = []
        previous: tuple[float | None, float | None] | None = None
        kind = None
        for group in sorted(groups, key=sort_key):
            summary = self._summarise(metric, groups[group])
            kind = kind or summary["kind"]
            median = summary["percentiles"]["50"]
            se = stats.median_standard_error(
                summary["buckets"], summary["counts"], summary["submissions"]
            )
            point = {
                by: group,
                "submissions": summary["submissions"],
                "mean": summary["mean"],
                "percentiles": summary["percentiles"],
                "median_se": se,
                "regression": None,
            }
            if previous is not None:
                point["regression"] = stats.regression_hint(previous, (median, se))
            previous = (median, se)
            points.append(point)
        return {"metric": metric, "kind": kind, "by": by, "channel": channel, "points": points}
