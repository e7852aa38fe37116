"""What ingest left in the incoming store, read back the way convert reads it."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.records import Record, iter_records
from pipeline.stores import open_store


def incoming_records(settings: Settings, **store_options: object) -> list[Record]:
    """Every record of every batch in the incoming store, batches in key order."""
    store = open_store(settings.incoming_url, **store_options)
    records: list[Record] = []
    for info in store.list(""):
        with store.open(info.key) as stream:
            records.extend(iter_records(stream, info.key))
    return records
