"""Incoming batches left unconverted: old objects in the incoming store as a health incident.

Convert deletes a batch from the incoming store once it is converted, so a batch there older
than TELEMETRY_STALE_INCOMING_MINUTES is data held back: the workers are not running or keep
failing, its records are parked (their Histograms.json revision cannot be fetched), it was
dead-lettered, or no queue message names it any more (the reconciler announces those again,
see `pipeline.reconcile`). The hourly stats cannot show it, since the records were accepted.
`alerts.evaluate` lists the store on every pass; any such batch is an `Incident` of kind
`stale_incoming`, stored and mailed as the others (one mail when it opens, one when no batch
is that old any more). A store that cannot be listed gives no verdict on that pass.
"""

from __future__ import annotations

import datetime as dt
import logging

from health.anomaly import Incident
from health.dead_letters import queue_subject
from pipeline.config import hide_url_passwords
from pipeline.layout import PARKED_PREFIX, UNVALIDATED_PREFIX
from pipeline.stores import open_store
from pipeline.stores.base import ObjectInfo

log = logging.getLogger(__name__)

KIND_STALE_INCOMING = "stale_incoming"
WHAT = "unconverted incoming batches"


def read_stale_incoming(settings, now: dt.datetime) -> list[ObjectInfo] | None:
    """The incoming objects older than TELEMETRY_STALE_INCOMING_MINUTES at `now`; None when
    the store cannot be listed (one log line naming TELEMETRY_INCOMING_URL)."""
    limit = now.timestamp() - settings.stale_incoming_minutes * 60
    store = None
    try:
        store = open_store(
            settings.incoming_url,
            setting="TELEMETRY_INCOMING_URL",
            endpoint_url=settings.s3_endpoint_url,
        )
        return [
            info
            for info in store.list("")
            if info.modified <= limit and not info.key.startswith(UNVALIDATED_PREFIX)
        ]
    except Exception as exc:  # noqa: BLE001 - an unusable store must not end the watcher
        problem = " ".join(str(exc).split()) or type(exc).__name__
        log.warning(
            "incoming-age check skipped this pass: cannot list TELEMETRY_INCOMING_URL=%s: %s",
            hide_url_passwords(settings.incoming_url),
            hide_url_passwords(problem),
        )
        return None
    finally:
        if store is not None:
            try:
                store.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def stale_incoming_incident(
    stale: list[ObjectInfo], store_url: str, minutes: float, now: dt.datetime
) -> Incident | None:
    """The ongoing incident of `stale` batches at `now` (naive UTC), or None when there are none.

    It started when the oldest of them passed the age limit (as far as the store can tell).
    """
    if not stale:
        return None
    where = queue_subject(store_url)
    oldest = min(stale, key=lambda info: info.modified)
    since = now
    if oldest.modified > 0:
        passed = dt.datetime.fromtimestamp(oldest.modified + minutes * 60, dt.UTC)
        since = min(now, passed.replace(tzinfo=None, microsecond=0))
    hours = (now - since).total_seconds() / 3600 + minutes / 60
    parked = sum(info.key.startswith(PARKED_PREFIX) for info in stale)
    count = len(stale)
    return Incident(
        KIND_STALE_INCOMING,
        where,
        since,
        None,
        now,
        0.0,
        float(count),
        f"{count:,} batch{'' if count == 1 else 'es'} in the incoming store {where} older than "
        f"{minutes:g} minutes (TELEMETRY_STALE_INCOMING_MINUTES), {parked:,} of them parked "
        f"records; the oldest, {oldest.key}, about {hours:.1f} hours old. Their records are "
        "accepted but not converted. Check that the convert workers run (`python -m convert`) "
        "and their log; parked records wait for their Histograms.json revision; dead letters "
        "are listed by `python -m pipeline dead-letters`; batches no queue message names are "
        "announced again by the reconciler (`python -m pipeline reconcile`).",
    )
