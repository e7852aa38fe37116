"""Hourly pipeline counters, written by ingest and convert, read by the dashboard and alerts.

One row per (hour, source, outcome, channel, doc_type): `outcome` is `accepted` for ingest,
`published` or an error reason code (`bad_json`, `missing_revision`, ...) for convert.
Counts are added with an upsert, so many workers can report the same hour concurrently.

A writer whose unit of work can be redone (a convert batch that is redelivered after a failed
delete or ack, a crash before the ack, or a lost lease) adds its counts with `add_many_once`:
the counts and a mark naming the unit (table `stats_counted_batches`) commit in one
transaction, and a unit that is already marked adds nothing. Marks older than the retention
(`keep`) are purged as new ones are written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, DateTime, Engine, Integer, String, bindparam, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db import Base, dialect_insert

StatKey = tuple[str, str, str]  # (outcome, channel, doc_type)

#: How long `add_many_once` remembers a unit of work by default.
DEFAULT_KEEP = dt.timedelta(days=7)


class HourlyStat(Base):
    __tablename__ = "hourly_stats"

    hour: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    doc_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class CountedBatch(Base):
    """One row per unit of work whose counts are in `hourly_stats` (see `add_many_once`)."""

    __tablename__ = "stats_counted_batches"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    counted_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, index=True)


def hour_of(moment: dt.datetime) -> dt.datetime:
    """Truncate to the hour, as a naive UTC datetime (what the table stores)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.replace(minute=0, second=0, microsecond=0)


def add_counts(
    engine: Engine, source: str, hour: dt.datetime, counts: Mapping[StatKey, int]
) -> None:
    """Add `counts` to the stored totals of `hour` (creating rows as needed)."""
    add_many(engine, [(hour, source, counts)])


def add_many(
    engine: Engine, batches: Iterable[tuple[dt.datetime, str, Mapping[StatKey, int]]]
) -> None:
    """Add many hours' counts in one transaction: (hour, source, counts) per item.

    One statement executed with all rows, so a backfill of weeks costs one commit, not one
    per hour.
    """
    rows = _rows(batches)
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(_upsert_statement(engine), rows)


def add_many_once(
    engine: Engine,
    source: str,
    batch_id: str,
    batches: Iterable[tuple[dt.datetime, str, Mapping[StatKey, int]]],
    keep: dt.timedelta = DEFAULT_KEEP,
    now: dt.datetime | None = None,
) -> bool:
    """Like `add_many`, once per (`source`, `batch_id`): False when that was counted already.

    The mark and the counts commit together, so a crash leaves either both or neither, and
    concurrent redos of one batch serialise on the mark's primary key (the loser's
    insert-or-ignore finds the winner's row and adds nothing). Marks older than `keep` are
    purged first; a batch redone after that would be counted again. Empty counts leave no mark.
    """
    rows = _rows(batches)
    if not rows:
        return False
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(delete(CountedBatch).where(CountedBatch.counted_at < now - keep))
        if not _mark(conn, engine, source, batch_id, now):
            return False
        conn.execute(_upsert_statement(engine), rows)
    return True


def _rows(batches: Iterable[tuple[dt.datetime, str, Mapping[StatKey, int]]]) -> list[dict]:
    """Upsert rows in key order: two workers counting the same hour then lock its rows in the
    same order (on PostgreSQL, any other order can deadlock them)."""
    rows = [
        {"hour": hour_of(hour), "source": source, "outcome": o, "channel": c, "doc_type": d, "n": n}
        for hour, source, counts in batches
        for (o, c, d), n in counts.items()
        if n
    ]
    return sorted(
        rows, key=lambda r: (r["hour"], r["source"], r["outcome"], r["channel"], r["doc_type"])
    )


def _mark(conn: Connection, engine: Engine, source: str, batch_id: str, now: dt.datetime) -> bool:
    """Insert the mark unless present; True when this transaction inserted it."""
    statement = (
        dialect_insert(engine, CountedBatch)
        .values(source=source, batch_id=batch_id, counted_at=now)
        .on_conflict_do_nothing(index_elements=["source", "batch_id"])
    )
    return conn.execute(statement).rowcount == 1


def _upsert_statement(engine: Engine):
    statement = dialect_insert(engine, HourlyStat).values(
        hour=bindparam("hour"),
        source=bindparam("source"),
        outcome=bindparam("outcome"),
        channel=bindparam("channel"),
        doc_type=bindparam("doc_type"),
        count=bindparam("n"),
    )
    return statement.on_conflict_do_update(
        index_elements=["hour", "source", "outcome", "channel", "doc_type"],
        set_={"count": HourlyStat.count + statement.excluded.count},
    )


_ORDER = (
    HourlyStat.hour,
    HourlyStat.source,
    HourlyStat.outcome,
    HourlyStat.channel,
    HourlyStat.doc_type,
)


def read_counts(
    engine: Engine, since: dt.datetime, source: str | None = None
) -> list[tuple[dt.datetime, str, str, str, str, int]]:
    """Rows since `since` as (hour, source, outcome, channel, doc_type, count), oldest first."""
    query = select(
        HourlyStat.hour,
        HourlyStat.source,
        HourlyStat.outcome,
        HourlyStat.channel,
        HourlyStat.doc_type,
        HourlyStat.count,
    ).where(HourlyStat.hour >= hour_of(since))
    if source is not None:
        query = query.where(HourlyStat.source == source)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(*_ORDER))]
