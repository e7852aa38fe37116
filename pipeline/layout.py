"""The published partition layout: dimensions, sanitising, paths and input filters.

A published object lives at
    <reason>/<appName>/<appUpdateChannel>/<appVersion>/<appBuildID>.<YYYYMMDD>.v2.log.<id>.lz4
exactly as in the original telemetry-server, so its tools and habits carry over. The first four
dimensions are directories; build id and submission date are in the file name. A filter has the
shape of the schema and is matched level by level, so a listing never descends into a
directory the filter excludes.
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
NAMESPACES_PREFIX = "namespaces/"
RESERVED_TOP_LEVEL = ("errors", "namespaces")
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
    dims = data.get("dimensions") if isinstance(data, Mapping) else None
    if not isinstance(dims, list):
        raise LayoutError(f"{where}: expected an object with a 'dimensions' list")
    spec: dict[str, Any] = {}
    for entry in dims:
        if not isinstance(entry, Mapping) or "field_name" not in entry:
            raise LayoutError(f"{where}: every dimension needs a 'field_name'")
        name = entry["field_name"]
        if name not in DIMENSIONS:
            raise LayoutError(
                f"{where}: unknown dimension {name!r}; known: {', '.join(DIMENSIONS)}"
            )
        allowed = entry.get("allowed_values", "*")
        if isinstance(allowed, dict) and not set(allowed) <= {"min", "max"}:
            raise LayoutError(f"{where}: {name}: a range takes only 'min' and 'max'")
        if not isinstance(allowed, (str, list, dict)):
            raise LayoutError(
                f"{where}: {name}: allowed_values must be '*', a string, a list or a range"
            )
        spec[name] = allowed
    return spec


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
    """Which published partitions a job reads; a missing dimension means "*"."""

    allowed: Mapping[str, Any]

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> InputFilter:
        return cls(_read_dimension_spec(source))

    @classmethod
    def everything(cls) -> InputFilter:
        return cls({})

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
        return all(self.matches_value(name, dims[name]) for name in DIMENSIONS if name in dims)

    def matches_key(self, key: str) -> bool:
        """True for a published key the filter selects (never for errors/ or namespaces/)."""
        try:
            dims = dimensions_from_key(key)
        except LayoutError:
            return False
        return dims["reason"] not in RESERVED_TOP_LEVEL and self.matches(dims)


def list_matching(store: BlobStore, input_filter: InputFilter) -> Iterator[ObjectInfo]:
    """Yield every published object the filter selects, pruning excluded directories.

    Directories are listed one level at a time and only followed when their value passes the
    filter; objects are listed only inside leaf directories that pass, and then checked on the
    build id and date in their names.
    """
    prefixes: Sequence[str] = [""]
    for depth, dimension in enumerate(DIRECTORY_DIMENSIONS):
        next_level = []
        for prefix in prefixes:
            for child in store.list_prefixes(prefix):
                value = child[len(prefix) : -1]
                if depth == 0 and value in RESERVED_TOP_LEVEL:
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
