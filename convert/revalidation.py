"""Where records published unvalidated wait for their re-validation, and what they are called.

A record whose Histograms.json revision cannot be fetched is published at once, its
histograms converted from the layouts the payload declares (`histograms.declared`) and marked
with `histogramDefinitions`. Its raw record is also kept in the incoming store as part of a
stash batch `unvalidated/<object id>.tpr`, announced on the work queue with a delay. When the
stash comes due, the worker converts it like any batch: records whose revision can now be had
are validated and published, the others published unvalidated again and the stash re-queued
with a longer delay (up to `MAX_DELAY`); it is deleted once nothing in it waits any more.

Both passes publish a record under the stash's object id (`unvalidated_<object id>`), so the
validated copy overwrites the unvalidated one: the same object keys, never a second copy. For
the same reason the stash's docIds are claimed for deduplication under that id.
"""

from __future__ import annotations

from pipeline.layout import UNVALIDATED_PREFIX

STASH_PREFIX = UNVALIDATED_PREFIX
STASH_SUFFIX = ".tpr"
OBJECT_ID_PREFIX = STASH_PREFIX.replace("/", "_")
DEFINITIONS_KEY = "histogramDefinitions"
#: Longest wait between two re-validations of a stash (the delay doubles up to it).
MAX_DELAY = 6 * 3600.0


def is_stash(key: str) -> bool:
    return key.startswith(STASH_PREFIX)


def stash_object_id(object_id: str) -> str:
    """The object id unvalidated records of the batch `object_id` are published under."""
    return object_id if object_id.startswith(OBJECT_ID_PREFIX) else OBJECT_ID_PREFIX + object_id


def stash_key(object_id: str) -> str:
    """The incoming key of the stash for the batch `object_id` (object_id_for gives back
    `stash_object_id(object_id)` for it)."""
    return STASH_PREFIX + stash_object_id(object_id).removeprefix(OBJECT_ID_PREFIX) + STASH_SUFFIX


def marker(reason: str, revision: str) -> dict[str, str]:
    """The `histogramDefinitions` value of a record converted with declared layouts."""
    return {"source": "payload", "reason": reason, "revision": revision}
