"""The published partition layout: dimensions, sanitising, paths and input filters.

A published object lives at
    <reason>/<appName>/<appUpdateChannel>/<appVersion>/<appBuildID>.<YYYYMMDD>.v2.log.<id>.lz4
exactly as in the original telemetry-server, so its tools and habits carry over. The first four
dimensions are directories; build id and submission date are in the file name. A filter has the
shape of the schema and is matched level by level, so a listing never descends into a
directory the filter excludes.

Two more trees sit beside it, each a *source* a filter can select with `"source"`:
`namespaces/<namespace>/<docType>/<docVersion>/<YYYYMMDD>/<id>.lz4` (generic `/submit/<ns>/...`
documents such as Glean pings; same `docId<TAB>json` lines) and
`errors/<reason>/<YYYYMMDD>/<id>.lz4` (one JSON object per failed record).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import LayoutError
from pipeline.stores.base import BlobStore, ObjectInfo

DIMENSIONS = (
    "reason",
    "appName",
    "appUpdateChannel",
    "appVersion",
    "appBuildID",
    "submission_date",
)
DIRECTORY_DIMENSIONS = DIMENSIONS[:4]
OTHER = "OTHER"
UNKNOWN = "UNKNOWN"
FORMAT_VERSION = "v2"
ERRORS_PREFIX = "errors/"
# In the incoming store, beside ingest's batches: records convert parked (their revision fetch
# failed unexpectedly; retried with a growing delay) and raw copies of records it published
# unvalidated (waiting, by design for hours, to be re-validated: not a backlog).
PARKED_PREFIX = "parked/"
UNVALIDATED_PREFIX = "unvalidated/"
NAMESPACES_PREFIX = "namespaces/"
RESERVED_TOP_LEVEL = ("errors", "namespaces")
TELEMETRY, NAMESPACES, ERRORS = "telemetry", "namespaces", "errors"
SOURCES = (TELEMETRY, NAMESPACES, ERRORS)
# The directory levels of the two other trees, in path order (the file name is `<id>.lz4`).
SOURCE_DIMENSIONS = {
    TELEMETRY: DIMENSIONS,
    NAMESPACES: ("namespace", "docType", "docVersion", "submission_date"),
    ERRORS: ("reason", "submission_date"),
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")
_FILE_NAME = re.compile(
    r"^(?P<appBuildID>.+)\.(?P<submission_date>[^.]+)\.v(?P<format>\d+)\.log\.(?P<id>[^./]+)\.lz4$"
)
DEFAULT_SCHEMA_PATH = Path(__file__).with_name("telemetry_schema.json")


def sanitize(value: object) -> str:
    """Make one dimension value safe as one path component; idempotent.

    `/` is replaced too (the original allowed it, which let one value become two
    directories and broke the path-to-dimensions round trip). A value of only dots
    would be a relative path, so it is replaced as well.
    """
    text = _UNSAFE.sub("_", str(value))
    if not text:
        return UNKNOWN
    if set(text) == {"."}:
        return "_" * len(text)
    return text


@dataclasses.dataclass(frozen=True)
class Schema:
    """Which values each dimension may take; anything else is published as OTHER."""

    allowed: Mapping[str, Any]

    @classmethod
    def load(cls, path: str | Path = DEFAULT_SCHEMA_PATH) -> Schema:
        return cls(_read_dimension_spec(path))

    def apply(self, raw: Mapping[str, object]) -> dict[str, str]:
        """Turn raw dimension values into the sanitised values used in paths."""
        out: dict[str, str] = {}
        for name in DIMENSIONS:
            value = raw.get(name)
            if value is None or value == "":
                out[name] = UNKNOWN
                continue
            allowed = self.allowed.get(name, "*")
            if allowed != "*" and not _value_allowed(str(value), allowed):
                out[name] = OTHER
            else:
                out[name] = sanitize(value)
        # The date is the one file-name field followed by a fixed '.': it must not hold one.
        out["submission_date"] = _date_component(out["submission_date"])
        if out["reason"] in RESERVED_TOP_LEVEL:
            out["reason"] = OTHER
        return out


def _value_allowed(value: str, allowed: Any) -> bool:
    if isinstance(allowed, str):
        return value == allowed
    if isinstance(allowed, list):
        return value in allowed
    if isinstance(allowed, dict):
        return _in_range(value, allowed)
    return False


def _read_dimension_spec(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    return _dimension_spec(*_read_spec_data(source), DIMENSIONS)


def _dimension_spec(data: Any, where: str, known: Sequence[str]) -> dict[str, Any]:
    """The `dimensions` list of a schema or filter as {field_name: allowed_values}."""
    dims = data.get("dimensions") if isinstance(data, Mapping) else None
    if not isinstance(dims, list):
        raise LayoutError(f"{where}: expected an object with a 'dimensions' list")
    spec: dict[str, Any] = {}
    for entry in dims:
        if not isinstance(entry, Mapping) or "field_name" not in entry:
            raise LayoutError(f"{where}: every dimension needs a 'field_name'")
        name = entry["field_name"]
        if name not in known:
            raise LayoutError(f"{where}: unknown dimension {name!r}; known: {', '.join(known)}")
        allowed = entry.get("allowed_values", "*")
        if isinstance(allowed, dict) and not set(allowed) <= {"min", "max"}:
            raise LayoutError(f"{where}: {name}: a range takes only 'min' and 'max'")
        if not isinstance(allowed, (str, list, dict)):
            raise LayoutError(
                f"{where}: {name}: allowed_values must be '*', a string, a list or a range"
            )
        spec[name] = allowed
    return spec


def _read_spec_data(source: str | Path | Mapping[str, Any]) -> tuple[Any, str]:
    """The parsed JSON of a schema or filter, and how to name it in an error."""
    if isinstance(source, Mapping):
        data = source
        where = "filter"
    else:
        where = str(source)
        try:
            data = json.loads(Path(source).read_text())
        except FileNotFoundError as exc:
            raise LayoutError(f"{where}: file does not exist") from exc
        except json.JSONDecodeError as exc:
            raise LayoutError(f"{where}: not valid JSON ({exc})") from exc
    return data, where


# -- ordering of versions, build ids and dates ----------------------------------------------

_PIECES = re.compile(r"[0-9]+|[^0-9._-]+")
_NUMBER, _END, _TEXT = 2, 1, 0


def sort_key(value: str) -> tuple:
    """Order '9.0' < '10.0' and '23.0a1' < '23.0' < '23.0.1': numbers compare as numbers.

    The value is split into runs of digits and runs of other characters (`.`, `_` and `-`
    only separate). At each position a number sorts after the end of the value, and the end
    sorts after text, so a pre-release tag (`a1`, `b2`) sorts before the release it precedes
    while a further number (`.1`) sorts after it. Build ids and dates are all digits and so
    compare exactly as numbers.
    """
    pieces = _PIECES.findall(str(value))
    key = [(_NUMBER, int(p), "") if p.isdigit() else (_TEXT, 0, p) for p in pieces]
    key.append((_END, 0, ""))
    return tuple(key)


def _in_range(value: str, bounds: Mapping[str, Any]) -> bool:
    key = sort_key(value)
    low, high = bounds.get("min"), bounds.get("max")
    if low is not None and key < sort_key(str(low)):
        return False
    if high is not None and key > sort_key(str(high)):
        return False
    return True


# -- paths ----------------------------------------------------------------------------------


def published_key(dims: Mapping[str, str], object_id: str) -> str:
    """The object key for one partition's output of one batch (dims already sanitised)."""
    parts = [sanitize(dims[name]) for name in DIRECTORY_DIMENSIONS]
    build, date = sanitize(dims["appBuildID"]), _date_component(dims["submission_date"])
    name = f"{build}.{date}.{FORMAT_VERSION}.log.{_object_id(object_id)}.lz4"
    return "/".join(parts + [name])


def _date_component(value: object) -> str:
    return sanitize(value).replace(".", "_")


def _object_id(object_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", object_id)
    if not safe:
        raise LayoutError("object id must not be empty")
    return safe


def dimensions_from_key(key: str) -> dict[str, str]:
    """Parse a published key back into its dimensions (the inverse of `published_key`)."""
    parts = key.split("/")
    if len(parts) != len(DIRECTORY_DIMENSIONS) + 1:
        raise LayoutError(f"{key!r} is not a published object key")
    match = _FILE_NAME.match(parts[-1])
    if not match:
        raise LayoutError(f"{key!r}: file name is not <build>.<date>.v2.log.<id>.lz4")
    dims = dict(zip(DIRECTORY_DIMENSIONS, parts[:-1], strict=True))
    dims["appBuildID"] = match["appBuildID"]
    dims["submission_date"] = match["submission_date"]
    return dims


def error_key(reason_code: str, date: str, object_id: str) -> str:
    """Where records that failed with `reason_code` on `date` (YYYYMMDD) are kept."""
    return f"{ERRORS_PREFIX}{sanitize(reason_code)}/{sanitize(date)}/{_object_id(object_id)}.lz4"


def namespace_key(
    namespace: str, doc_type: str, doc_version: str, date: str, object_id: str
) -> str:
    """Where documents of the generic `/submit/<namespace>/...` form are published."""
    parts = [sanitize(namespace), sanitize(doc_type), sanitize(doc_version), sanitize(date)]
    return NAMESPACES_PREFIX + "/".join(parts) + f"/{_object_id(object_id)}.lz4"


# -- filters --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputFilter:
    """Which published partitions a job reads; a missing dimension means "*".

    `source` picks the tree: "telemetry" (the default, the original layout), "namespaces" or
    "errors"; each has its own dimensions (`SOURCE_DIMENSIONS`).
    """

    allowed: Mapping[str, Any]
    source: str = TELEMETRY

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> InputFilter:
        data, where = _read_spec_data(source)
        tree = data.get("source", TELEMETRY) if isinstance(data, Mapping) else TELEMETRY
        if tree not in SOURCES:
            raise LayoutError(f"{where}: unknown source {tree!r}; known: {', '.join(SOURCES)}")
        return cls(_dimension_spec(data, where, SOURCE_DIMENSIONS[tree]), tree)

    @classmethod
    def everything(cls, source: str = TELEMETRY) -> InputFilter:
        return cls({}, source)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The names of this filter's source's dimensions, in path order."""
        return SOURCE_DIMENSIONS[self.source]

    def matches_value(self, dimension: str, value: str) -> bool:
        allowed = self.allowed.get(dimension, "*")
        if allowed == "*":
            return True
        if isinstance(allowed, str):
            return sanitize(allowed) == value
        if isinstance(allowed, list):
            return value in {sanitize(v) for v in allowed}
        return _in_range(value, allowed)

    def matches(self, dims: Mapping[str, str]) -> bool:
        return all(self.matches_value(name, dims[name]) for name in self.dimensions if name in dims)

    def matches_key(self, key: str) -> bool:
        """True for a key of this filter's source that the filter selects."""
        try:
            tree, dims = source_dimensions(key)
        except LayoutError:
            return False
        return tree == self.source and self.matches(dims)


def source_dimensions(key: str) -> tuple[str, dict[str, str]]:
    """(source, dimensions) of any published key: telemetry, namespaces/ or errors/."""
    for tree in (NAMESPACES, ERRORS):
        if key.startswith(tree + "/"):
            names = SOURCE_DIMENSIONS[tree]
            parts = key[len(tree) + 1 :].split("/")
            if len(parts) != len(names) + 1 or not parts[-1].endswith(".lz4"):
                raise LayoutError(f"{key!r} is not a {tree}/ object key")
            return tree, dict(zip(names, parts[:-1], strict=True))
    dims = dimensions_from_key(key)
    if dims["reason"] in RESERVED_TOP_LEVEL:
        raise LayoutError(f"{key!r} is not a published object key")
    return TELEMETRY, dims


def list_matching(store: BlobStore, input_filter: InputFilter) -> Iterator[ObjectInfo]:
    """Yield every published object the filter selects, pruning excluded directories.

    Directories are listed one level at a time and only followed when their value passes the
    filter; objects are listed only inside leaf directories that pass, and then checked on the
    build id and date in their names (telemetry) or as a whole key (the other trees).
    """
    telemetry = input_filter.source == TELEMETRY
    levels = DIRECTORY_DIMENSIONS if telemetry else input_filter.dimensions
    prefixes: Sequence[str] = [""] if telemetry else [input_filter.source + "/"]
    for depth, dimension in enumerate(levels):
        next_level = []
        for prefix in prefixes:
            for child in store.list_prefixes(prefix):
                value = child[len(prefix) : -1]
                if telemetry and depth == 0 and value in RESERVED_TOP_LEVEL:
                    continue
                if input_filter.matches_value(dimension, value):
                    next_level.append(child)
        prefixes = next_level
    for prefix in prefixes:
        for info in store.list(prefix):
            if "/" in info.key[len(prefix) :]:
                continue
            if input_filter.matches_key(info.key):
                yield info
