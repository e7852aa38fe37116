"""Process one incoming record into its outcome: a published line, an error, or parked.

Pure logic apart from the revision lookup: no store, queue or database access here, so the
whole decision table is unit-testable with a stand-in converter.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from convert import outcomes as oc
from convert.decode import decoded_body
from convert.dimensions import SubmissionPath, parse_path, raw_dimensions, submission_date
from convert.geo import annotate
from convert.histogram_tools import HistogramTools
from convert.outcomes import Outcome, RecordRejected
from convert.revalidation import DEFINITIONS_KEY, marker, stash_object_id
from pipeline.allow_list import AllowList
from pipeline.layout import DIMENSIONS, UNKNOWN, Schema, namespace_key, published_key, sanitize
from pipeline.records import Record

log = logging.getLogger(__name__)

HISTOGRAM_ERRORS_KEY = "histogramErrors"
SECTION = "*"  # the name histograms.convert gives a whole section of the wrong type


class RecordConverter:
    """Decide and build the output of one record of a batch whose object id is fixed."""

    def __init__(
        self,
        tools: HistogramTools,
        schema: Schema,
        max_decompressed_bytes: int,
        allow_list: AllowList | None = None,
    ) -> None:
        self.tools = tools
        self.schema = schema
        self.limit = max_decompressed_bytes
        self.allow_list = allow_list or AllowList.parse()
        self._partitions: dict[tuple, tuple[str, str, str]] = {}
        self._logged_sites: set[tuple[str, str, int]] = set()

    def convert(self, record: Record, object_id: str, revalidating: bool = False) -> Outcome:
        """The outcome of one record; total: whatever goes wrong becomes an error outcome.

        A `RecordRejected` carries its reason code. Any other exception is a bug (or input no
        rule foresaw): the record becomes `bad_payload` with the exception in its details, and
        the traceback is logged once per distinct bug site, so one record never sinks its batch.
        `revalidating`: the record comes from a stash of records published unvalidated; one
        whose revision turns out not to exist then stays published unvalidated.
        """
        date = submission_date(record.received_ms)
        sub: SubmissionPath | None = None
        try:
            sub = parse_path(record.path)
            return self._convert(record, sub, object_id, date, revalidating)
        except RecordRejected as exc:
            return self._rejected(exc.reason, exc.details, record, sub, date)
        except MemoryError:
            raise  # the process, not the record: the batch is retried
        except Exception as exc:  # noqa: BLE001 - one record's failure must stay that record's
            details = f"unexpected {type(exc).__name__} while converting: {exc}"
            self._log_unexpected(exc, record, sub)
            return self._rejected(oc.BAD_PAYLOAD, details, record, sub, date)

    def _rejected(
        self, reason: str, details: str, record: Record, sub: SubmissionPath | None, date: str
    ) -> Outcome:
        """An error outcome, with the channel and doc type the URL names when it parsed."""
        if sub is None:
            return Outcome(reason, "", UNKNOWN, UNKNOWN, date, details=details)
        try:
            url_dims = self.schema.apply(raw_dimensions(sub, None, record.received_ms))
            channel, doc_type = url_dims["appUpdateChannel"], url_dims["reason"]
        except Exception:  # noqa: BLE001 - the record still goes to errors, unclassified
            log.exception("cannot read the dimensions of record %s from its URL", sub.doc_id)
            channel, doc_type = UNKNOWN, UNKNOWN
        return Outcome(reason, sub.doc_id, channel, doc_type, date, details=details)

    def _log_unexpected(self, exc: Exception, record: Record, sub: SubmissionPath | None) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = (frames[-1].filename, frames[-1].lineno) if frames else ("", 0)
        site = (type(exc).__name__, *where)
        doc = sub.doc_id if sub is not None else record.path[:200]
        if site not in self._logged_sites:
            self._logged_sites.add(site)
            log.error(
                "record %s (offset %d): unexpected %s, sent to errors/%s; a bug, please "
                "report it (later ones from the same place are logged without traceback)",
                doc,
                record.offset,
                type(exc).__name__,
                oc.BAD_PAYLOAD,
                exc_info=exc,
            )
        else:
            log.error(
                "record %s (offset %d): unexpected %s again (%s:%d), sent to errors/%s: %s",
                doc,
                record.offset,
                type(exc).__name__,
                *where,
                oc.BAD_PAYLOAD,
                exc,
            )

    def _convert(
        self, record: Record, sub: SubmissionPath, object_id: str, date: str, revalidating: bool
    ) -> Outcome:
        if not sub.is_telemetry and not self.allow_list.allows(sub.namespace, sub.doc_type):
            raise RecordRejected(
                oc.UNKNOWN_NAMESPACE,
                f"{sub.namespace}/{sub.doc_type} is not on the allow-list "
                "(TELEMETRY_ALLOWED_DOC_TYPES adds it)",
            )
        data = decoded_body(record.body, record.headers, self.limit)
        # The fast path: the histograms section stays JSON text until it is converted.
        split = None
        if sub.is_telemetry and self.tools.split_payload is not None:
            split = self.tools.split_payload(data)
        payload = self._parse(data) if split is None else split.payload
        raw = raw_dimensions(sub, payload, record.received_ms)
        annotate(payload, record.headers)
        if not sub.is_telemetry:
            dims = self.schema.apply(raw)
            key = namespace_key(sub.namespace, sub.doc_type, sub.doc_version, date, object_id)
            channel = dims["appUpdateChannel"]
            doc_type = sanitize(self.allow_list.stats_label(sub.namespace, sub.doc_type))
            return self._published(sub.doc_id, key, payload, channel, doc_type, date)
        key, channel, doc_type = self._partition(raw, object_id)
        try:
            revision = self.tools.revision_of(payload)
        except Exception as exc:  # noqa: BLE001 - a malformed `info` is the payload's fault
            if split is not None:
                self._whole(data, record)  # not JSON at all: that is the error to report
            raise RecordRejected(oc.BAD_PAYLOAD, f"cannot read the revision: {exc!r}") from exc
        if not revision:
            if split is not None:
                payload, split = self._whole(data, record), None
            if has_histograms(payload):
                raise RecordRejected(
                    oc.MISSING_REVISION, "payload has histograms but names no revision"
                )
            if payload.get("ver") == 1:
                payload["ver"] = 2  # the compact format, as converted v1 payloads announce
            return self._published(sub.doc_id, key, payload, channel, doc_type, date)
        unvalidated: tuple[str, str, bool] | None = None  # (reason, details, revalidate)
        try:
            try:
                definitions = self.tools.definitions(revision)
            except Exception:
                # Every way on from here reads the histograms as dicts, and a record whose
                # text is not JSON must say so first, as on the general path.
                if split is not None:
                    payload, split = self._whole(data, record), None
                raise
        except RecordRejected:
            raise
        except self.tools.unknown_revision as exc:
            details = f"no Histograms.json for {revision}: {exc}"
            if not revalidating or self.tools.declared_definitions is None:
                raise RecordRejected(oc.MISSING_REVISION, details) from exc
            # Published unvalidated already; taking it back would surprise its readers more
            # than keeping it, marked, with the layouts it declared.
            definitions = self.tools.declared_definitions(payload)
            unvalidated = (oc.MISSING_REVISION, details, False)
        except self.tools.revision_unavailable as exc:
            if self.tools.declared_definitions is None:
                return Outcome(
                    oc.PARKED,
                    sub.doc_id,
                    channel,
                    doc_type,
                    date,
                    details=f"{revision}: {exc}",
                    reason=oc.REVISION_UNAVAILABLE,
                )
            definitions = self.tools.declared_definitions(payload)
            unvalidated = (oc.REVISION_UNAVAILABLE, f"{revision}: {exc}", True)
        except Exception as exc:  # noqa: BLE001 - fetching failed in a way nobody foresaw: the
            # record is not at fault, so it waits for a retry instead of becoming an error
            log.exception("unexpected failure getting %s; parking record %s", revision, sub.doc_id)
            return Outcome(
                oc.PARKED,
                sub.doc_id,
                channel,
                doc_type,
                date,
                details=f"{revision}: {exc!r}",
                reason=f"unexpected {type(exc).__name__}",
            )
        try:
            result = None
            if split is not None:
                result = self.tools.convert_split(split, definitions, payload)
                if result is None:  # the section is not valid JSON: as the general path says
                    payload = self._whole(data, record)
            if result is None:
                result = self.tools.convert_payload(payload, definitions)
        except RecordRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - wrong types inside the histogram sections
            raise RecordRejected(
                oc.INVALID_HISTOGRAM, f"histograms cannot be converted: {exc!r}"
            ) from exc
        broken = [reason for name, reason in result.invalid if name == SECTION]
        if broken:
            raise RecordRejected(oc.INVALID_HISTOGRAM, "; ".join(broken))
        converted = result.payload
        lost = bool(result.invalid or result.unknown)
        if lost:
            converted[HISTOGRAM_ERRORS_KEY] = {
                "invalid": [[name, reason] for name, reason in result.invalid],
                "unknown": list(result.unknown),
            }
        if unvalidated is not None:
            reason, details, revalidate = unvalidated
            converted[DEFINITIONS_KEY] = marker(reason, revision)
            key = self._partition(raw, stash_object_id(object_id))[0]
        outcome = self._published(sub.doc_id, key, converted, channel, doc_type, date)
        outcome.lost_histograms = bool(result.invalid)
        if unvalidated is not None:
            outcome.unvalidated, outcome.revalidate = True, revalidate
            outcome.reason, outcome.details = reason, details
        return outcome

    def _parse(self, data: bytes) -> dict:
        """The whole payload as dicts; RecordRejected when it is not a JSON object."""
        try:
            payload = self.tools.loads(data)
        except (ValueError, OverflowError) as exc:  # UnicodeDecodeError is a ValueError
            raise RecordRejected(oc.BAD_JSON, f"body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise RecordRejected(
                oc.BAD_PAYLOAD, f"payload is a JSON {type(payload).__name__}, not an object"
            )
        return payload

    def _whole(self, data: bytes, record: Record) -> dict:
        """The payload parsed whole, for the paths that read its histograms as dicts."""
        payload = self._parse(data)
        annotate(payload, record.headers)
        return payload

    def _partition(self, raw: dict[str, str | None], object_id: str) -> tuple[str, str, str]:
        """(published key, channel, doc type) of raw dimensions; memoised, as a batch
        usually holds few distinct partitions and sanitising is a dozen regex runs."""
        memo_key = (object_id, *(raw.get(name) for name in DIMENSIONS))
        found = self._partitions.get(memo_key)
        if found is None:
            if len(self._partitions) > 4096:
                self._partitions.clear()
            dims = self.schema.apply(raw)
            found = (published_key(dims, object_id), dims["appUpdateChannel"], dims["reason"])
            self._partitions[memo_key] = found
        return found

    def _published(
        self, doc_id: str, key: str, payload: Any, channel: str, doc_type: str, date: str
    ) -> Outcome:
        try:
            text = self.tools.dumps(payload)
            body = text.encode("utf-8") if isinstance(text, str) else text
        except UnicodeError as exc:
            # "\ud800" is valid JSON syntax that the parser accepts, but not a character:
            # the text cannot be written as UTF-8 (orjson refuses it, ujson's output fails).
            raise RecordRejected(
                oc.BAD_JSON, f"payload text is not valid Unicode (a lone surrogate?): {exc}"
            ) from exc
        line = b"".join((doc_id.encode("utf-8"), b"\t", body, b"\n"))
        return Outcome(oc.PUBLISHED, doc_id, channel, doc_type, date, partition=key, line=line)


def has_histograms(payload: Mapping[str, Any]) -> bool:
    """True when a v1 or v4 payload carries any histogram section with content."""
    if payload.get("histograms"):
        return True
    inner = payload.get("payload")
    if not isinstance(inner, Mapping):
        return False
    if inner.get("histograms") or inner.get("keyedHistograms"):
        return True
    processes = inner.get("processes")
    if isinstance(processes, Mapping):
        for process in processes.values():
            if isinstance(process, Mapping) and (
                process.get("histograms") or process.get("keyedHistograms")
            ):
                return True
    return False
