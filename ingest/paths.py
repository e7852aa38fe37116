"""Submission URL forms: which paths the edge accepts and what they say about the document.

Pure functions, no I/O: the handler calls `parse_submission` and maps `BadSubmissionPath` to
400. Only the shape of the path is checked here (the edge never looks inside the body); the
converter takes the dimensions from the stored path again.

Accepted forms (query strings are stripped before parsing):

    /submit/telemetry/<docId>
    /submit/telemetry/<docId>/<docType>/<appName>/<appVersion>/<appUpdateChannel>/<appBuildID>
    /submit/<namespace>/<docType>/<docVersion>/<docId>        (generic, e.g. Glean)
"""

from __future__ import annotations

import dataclasses
import re

from ingest.errors import BadSubmissionPath

SUBMIT_PREFIX = "/submit/"
TELEMETRY = "telemetry"
MAX_PATH_BYTES = 2048  # longer request targets get 414; real ones are under 200 bytes

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.+%-]{1,100}$")
_DOC_VERSION = re.compile(r"^[0-9]{1,9}$")


@dataclasses.dataclass(frozen=True)
class Submission:
    namespace: str
    doc_id: str
    doc_type: str | None = None
    doc_version: str | None = None
    app_name: str | None = None
    app_version: str | None = None
    channel: str | None = None
    build_id: str | None = None


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


_UUID_PART = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_SEGMENT_PART = r"[A-Za-z0-9_.+%-]{1,100}"
# One regex per form for the hot path; the step-by-step parser below explains rejections.
_TELEMETRY_FAST = re.compile(
    rf"^/submit/telemetry/({_UUID_PART})(?:/({_SEGMENT_PART})/({_SEGMENT_PART})/({_SEGMENT_PART})"
    rf"/({_SEGMENT_PART})/({_SEGMENT_PART}))?/?$"
)
_GENERIC_FAST = re.compile(
    rf"^/submit/([a-z0-9][a-z0-9_-]{{0,63}})/({_SEGMENT_PART})/([0-9]{{1,9}})/({_UUID_PART})/?$"
)


def parse_submission(path: str) -> Submission:
    """Parse a raw path (without query string) that starts with `/submit/`."""
    match = _TELEMETRY_FAST.match(path)
    if match is not None:
        doc_id, doc_type, app_name, app_version, channel, build_id = match.groups()
        return Submission(
            TELEMETRY, doc_id, doc_type, None, app_name, app_version, channel, build_id
        )
    match = _GENERIC_FAST.match(path)
    if match is not None and match.group(1) != TELEMETRY:
        namespace, doc_type, doc_version, doc_id = match.groups()
        return Submission(namespace, doc_id, doc_type, doc_version)
    return _parse_slowly(path)


def _parse_slowly(path: str) -> Submission:
    if not path.startswith(SUBMIT_PREFIX):
        raise BadSubmissionPath(f"{path!r} is not under {SUBMIT_PREFIX}")
    parts = path[len(SUBMIT_PREFIX) :].split("/")
    if parts and parts[-1] == "":
        parts.pop()  # tolerate one trailing slash
    if not parts or not parts[0]:
        raise BadSubmissionPath("no namespace after /submit/")
    namespace, rest = parts[0], parts[1:]
    if namespace == TELEMETRY:
        return _parse_telemetry(rest)
    return _parse_generic(namespace, rest)


def _check_doc_id(doc_id: str) -> None:
    if not is_uuid(doc_id):
        raise BadSubmissionPath(f"docId {doc_id[:64]!r} is not a UUID")


def _check_segments(names: tuple[str, ...], values: list[str]) -> None:
    for name, value in zip(names, values, strict=True):
        if not _SEGMENT.match(value):
            raise BadSubmissionPath(
                f"{name} {value[:64]!r} is empty or has characters outside [A-Za-z0-9_.+%-]"
            )


def _parse_telemetry(rest: list[str]) -> Submission:
    if len(rest) == 1:
        _check_doc_id(rest[0])
        return Submission(TELEMETRY, rest[0])
    if len(rest) == 6:
        _check_doc_id(rest[0])
        _check_segments(
            ("docType", "appName", "appVersion", "appUpdateChannel", "appBuildID"), rest[1:]
        )
        doc_id, doc_type, app_name, app_version, channel, build_id = rest
        return Submission(
            TELEMETRY, doc_id, doc_type, None, app_name, app_version, channel, build_id
        )
    raise BadSubmissionPath(
        f"/submit/telemetry/ takes 1 or 6 path segments (docId[/docType/appName/appVersion/"
        f"appUpdateChannel/appBuildID]), got {len(rest)}"
    )


def _parse_generic(namespace: str, rest: list[str]) -> Submission:
    if not _NAMESPACE.match(namespace):
        raise BadSubmissionPath(f"namespace {namespace[:64]!r} must match [a-z0-9][a-z0-9_-]*")
    if len(rest) != 3:
        raise BadSubmissionPath(
            f"/submit/{namespace}/ takes 3 path segments (docType/docVersion/docId), got {len(rest)}"
        )
    doc_type, doc_version, doc_id = rest
    _check_segments(("docType",), [doc_type])
    if not _DOC_VERSION.match(doc_version):
        raise BadSubmissionPath(f"docVersion {doc_version[:64]!r} is not a number")
    _check_doc_id(doc_id)
    return Submission(namespace, doc_id, doc_type, doc_version)
