"""Dimensions of a record: from the submission URL first, then from the payload itself.

URL forms (README "Submission URLs", docs/formats.md; a query string such as `?v=4` is ignored):

    /submit/telemetry/<docId>[/<docType>[/<appName>[/<appVersion>[/<channel>[/<buildId>]]]]]
    /submit/<namespace>/<docType>/<docVersion>/<docId>      (generic form, e.g. Glean)

A dimension missing from the URL is taken from the payload: v4 pings carry `type` and an
`application` object (`name`, `version`, `channel`, `buildId`); v1 payloads an `info` object
(`reason`, `appName`, `appVersion`, `appUpdateChannel`, `appBuildID`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Mapping
from urllib.parse import unquote

from convert.outcomes import BAD_PATH, RecordRejected

TELEMETRY = "telemetry"
# The URL's telemetry dimensions in order, after the docId.
URL_DIMENSIONS = ("reason", "appName", "appVersion", "appUpdateChannel", "appBuildID")
_V4_FIELDS = {
    "appName": "name",
    "appVersion": "version",
    "appUpdateChannel": "channel",
    "appBuildID": "buildId",
}
_V1_FIELDS = {
    "reason": "reason",
    "appName": "appName",
    "appVersion": "appVersion",
    "appUpdateChannel": "appUpdateChannel",
    "appBuildID": "appBuildID",
}
MAX_ID_LENGTH = 128
_WHITESPACE = re.compile(r"\s")


@dataclasses.dataclass(frozen=True, slots=True)
class SubmissionPath:
    """A parsed submission path: the telemetry form or the generic namespace form."""

    doc_id: str
    namespace: str = TELEMETRY
    url_dims: Mapping[str, str] = dataclasses.field(default_factory=dict)
    doc_type: str = ""
    doc_version: str = ""

    @property
    def is_telemetry(self) -> bool:
        return self.namespace == TELEMETRY


def parse_path(path: str) -> SubmissionPath:
    """Split a request path into its parts; raise RecordRejected(bad_path) when it has none."""
    bare = path.split("?", 1)[0].split("#", 1)[0]
    parts = [unquote(p) for p in bare.split("/")] if "%" in bare else bare.split("/")
    if len(parts) < 4 or parts[0] != "" or parts[1] != "submit":
        raise RecordRejected(BAD_PATH, f"not a /submit/ path: {path[:200]!r}")
    parts = parts[2:]
    if parts and parts[-1] == "":
        parts.pop()  # tolerate one trailing slash
    if any(p == "" for p in parts):
        raise RecordRejected(BAD_PATH, f"empty path component in {path[:200]!r}")
    namespace = parts[0]
    if namespace == TELEMETRY:
        rest = parts[1:]
        if not 1 <= len(rest) <= 1 + len(URL_DIMENSIONS):
            raise RecordRejected(
                BAD_PATH, f"telemetry path needs a docId and at most 5 dimensions: {path[:200]!r}"
            )
        doc_id = _checked_id(rest[0], path)
        return SubmissionPath(doc_id, TELEMETRY, dict(zip(URL_DIMENSIONS, rest[1:], strict=False)))
    if len(parts) != 4:
        raise RecordRejected(
            BAD_PATH,
            f"generic path must be /submit/<namespace>/<docType>/<docVersion>/<docId>: {path[:200]!r}",
        )
    _, doc_type, doc_version, doc_id = parts
    return SubmissionPath(
        _checked_id(doc_id, path), namespace, {"reason": doc_type}, doc_type, doc_version
    )


def _checked_id(doc_id: str, path: str) -> str:
    if len(doc_id) > MAX_ID_LENGTH or _WHITESPACE.search(doc_id):
        raise RecordRejected(BAD_PATH, f"unusable docId in {path[:200]!r}")
    return doc_id


def raw_dimensions(sub: SubmissionPath, payload: object, received_ms: int) -> dict[str, str | None]:
    """The raw (unsanitised) dimension values, URL first, payload as the fallback."""
    dims: dict[str, str | None] = dict(sub.url_dims)
    if isinstance(payload, Mapping):
        application = payload.get("application")
        info = payload.get("info")
        for name in URL_DIMENSIONS:
            if dims.get(name):
                continue
            value = None
            if name == "reason":
                value = payload.get("type") if isinstance(payload.get("type"), str) else None
            elif isinstance(application, Mapping):
                value = application.get(_V4_FIELDS[name])
            if value is None and isinstance(info, Mapping):
                value = info.get(_V1_FIELDS[name])
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                dims[name] = str(value)
    dims["submission_date"] = submission_date(received_ms)
    return dims


def submission_date(received_ms: int) -> str:
    """The UTC day a record was received on, as YYYYMMDD."""
    return _day(received_ms // 86_400_000)


@functools.lru_cache(maxsize=64)
def _day(days: int) -> str:
    try:
        return (dt.datetime(1970, 1, 1) + dt.timedelta(days=days)).strftime("%Y%m%d")
    except (OverflowError, ValueError):
        return "UNKNOWN"
