"""Accepted submissions per hour, channel and docType, for the dashboard's volume charts.

Counted in memory on the event loop (one dict update per request) and added to the
`hourly_stats` table with `pipeline.stats.add_counts` every `interval` seconds from a worker
thread, so the database is never on a request's path. Counts of a failed flush are kept and
retried with the next one; a crash loses at most one interval of counts (the submissions
themselves are safe in the spool, only this statistic is approximate).

Labels match what convert reports: telemetry channel and docType (`reason`) go through the
schema (`OTHER` outside its allowed lists, `UNKNOWN` when missing), which also keeps client-chosen
values from growing the table. Generic submissions count as channel `UNKNOWN`, docType
`<namespace>.<docType>` when the pair is on the allow-list (`pipeline.allow_list`), else `OTHER`:
a client inventing 20,000 doc types used to add 20,000 rows an hour.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging

from ingest.paths import TELEMETRY, Submission
from pipeline.allow_list import AllowList
from pipeline.layout import OTHER, UNKNOWN, Schema
from pipeline.outcomes import ACCEPTED, SOURCE_INGEST

log = logging.getLogger(__name__)

SOURCE = SOURCE_INGEST
OUTCOME = ACCEPTED
MAX_LABEL = 64
LABEL_CACHE_SIZE = 10_000


class HourlyCounts:
    def __init__(
        self,
        database_url: str,
        *,
        interval: float = 60.0,
        schema: Schema | None = None,
        allow_list: AllowList | None = None,
    ) -> None:
        self.database_url = database_url
        self.interval = interval
        self._schema = schema or Schema.load()
        self._allow_list = allow_list or AllowList.parse()
        self._counts: collections.Counter[tuple[int, str, str]] = collections.Counter()
        self._engine = None
        self._task: asyncio.Task | None = None
        self._label_cache: dict[tuple, tuple[str, str]] = {}  # the schema is not free per request

    def add(self, received_ms: int, submission: Submission) -> None:
        hour = received_ms // 3_600_000
        raw = (submission.namespace, submission.doc_type, submission.channel)
        labels = self._label_cache.get(raw)
        if labels is None:
            if len(self._label_cache) >= LABEL_CACHE_SIZE:
                self._label_cache.clear()
            labels = self._label_cache[raw] = self._labels(submission)
        self._counts[(hour, *labels)] += 1

    def _labels(self, submission: Submission) -> tuple[str, str]:
        """(channel, docType) as convert reports them: telemetry values go through the schema."""
        if submission.namespace == TELEMETRY:
            dims = self._schema.apply(
                {"reason": submission.doc_type, "appUpdateChannel": submission.channel}
            )
            return dims["appUpdateChannel"][:MAX_LABEL], dims["reason"][:MAX_LABEL]
        namespace, doc_type = submission.namespace, submission.doc_type or ""
        if not self._allow_list.allows(namespace, doc_type):
            return UNKNOWN, OTHER
        label = self._allow_list.stats_label(namespace, doc_type)
        return UNKNOWN, f"{namespace}.{label}"[:MAX_LABEL]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """Write the counts gathered so far; keep them for the next flush if that fails."""
        if not self._counts:
            return
        pending, self._counts = self._counts, collections.Counter()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._write, pending)
        except Exception as exc:  # the database is optional for ingest: log and retry later
            log.warning(
                "hourly counts: cannot write %d rows to %s: %s; retrying later",
                len(pending),
                self.database_url,
                exc,
            )
            self._counts.update(pending)

    def _write(self, pending: collections.Counter[tuple[int, str, str]]) -> None:
        from pipeline.db import init_db, make_engine
        from pipeline.stats import add_counts

        if self._engine is None:
            self._engine = make_engine(self.database_url)
            init_db(self._engine)
        by_hour: dict[int, dict[tuple[str, str, str], int]] = collections.defaultdict(dict)
        for (hour, channel, doc_type), count in pending.items():
            by_hour[hour][(OUTCOME, channel, doc_type)] = count
        for hour, counts in by_hour.items():
            moment = dt.datetime.fromtimestamp(hour * 3600, dt.UTC)
            add_counts(self._engine, SOURCE, moment, counts)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._engine is not None:
            self._engine.dispose()
