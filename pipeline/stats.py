"""Hourly pipeline counters, written by ingest and convert, read by the dashboard and alerts.

One row per (hour, source, outcome, channel, doc_type): `outcome` is `accepted` for ingest,
`published` or an error reason code (`bad_json`, `missing_revision`, ...) for convert.
Counts are added with an upsert, so many workers can report the same hour concurrently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from sqlalchemy import DateTime, Engine, Integer, String, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db import Base

StatKey = tuple[str, str, str]  # (outcome, channel, doc_type)


class HourlyStat(Base):
    __tablename__ = "hourly_stats"

    hour: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    doc_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


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
    rows = [
        {"hour": hour_of(hour), "source": source, "outcome": o, "channel": c, "doc_type": d, "n": n}
        for hour, source, counts in batches
        for (o, c, d), n in counts.items()
        if n
    ]
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(_upsert_statement(engine), rows)


def _upsert_statement(engine: Engine):
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(HourlyStat).values(
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
