"""Has the pipeline seen this docId? A read-only lookup in the converter's dedup table.

The scheduler's publish guard refuses output files that contain a docId the pipeline has
converted (a raw record, however re-encoded, carries its docId). The table belongs to
`convert.dedup` (`convert_seen_docs`, one row per docId within the dedup window); this module
only reads it, by name, so the scheduler need not import the converter.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, bindparam, column, select, table
from sqlalchemy.exc import OperationalError, ProgrammingError

SEEN_DOCS_TABLE = "convert_seen_docs"
CHUNK = 500

_seen = table(SEEN_DOCS_TABLE, column("doc_id"))
_lookup = select(_seen.c.doc_id).where(_seen.c.doc_id.in_(bindparam("ids", expanding=True)))


def seen_doc_ids(engine: Engine, doc_ids: Iterable[str]) -> set[str]:
    """The subset of `doc_ids` recorded as converted (compared as given and lower-cased).

    An installation whose converter never ran has no table yet: nothing has been seen."""
    wanted = sorted({d for doc in doc_ids for d in (doc, doc.lower())})
    found: set[str] = set()
    if not wanted:
        return found
    try:
        with engine.connect() as conn:
            for start in range(0, len(wanted), CHUNK):
                rows = conn.execute(_lookup, {"ids": wanted[start : start + CHUNK]})
                found.update(row[0] for row in rows)
    except (OperationalError, ProgrammingError) as exc:
        if "convert_seen_docs" in str(exc) and (
            "no such table" in str(exc) or "does not exist" in str(exc)
        ):
            return found
        raise
    return found
