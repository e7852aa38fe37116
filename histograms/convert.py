"""Validate a payload's histograms against their definitions and convert them to compact form.

Handles both payload generations:

* v1 (2013, e.g. idle-daily): histograms in `histograms`; the result gets `ver` 2 as the
  original server wrote it, announcing the compact format.
* v4 (`main` pings): `payload.histograms`, `payload.keyedHistograms` and
  `payload.processes.<process>.histograms` / `.keyedHistograms`; the structure is kept.

Invalid histograms are removed and reported as `(name, reason)`; histograms the revision does
not define are removed and their names listed, so nothing disappears silently. Names outside
the top level are qualified: `<process>/<name>` for process histograms and `<name>[<key>]`
for one key of a keyed histogram.

The per-histogram loop runs in Cython when the extension is built (`IMPLEMENTATION`).

`split_payload` and `convert_split` are the fast path for v1 payloads given as JSON text:
only the rest of the document is parsed into dicts; the histograms section is read from the
text and written back in compact form as JSON text (an `orjson.Fragment`), so its thousands of
small dicts and strings are never built. The output is byte for byte what `convert_payload`
of the parsed document gives after `orjson.dumps` (tests/convert/test_golden.py); anything
outside the shape it reads gives None, and the caller takes the general path.
"""

from __future__ import annotations

import dataclasses
import logging

import orjson

from histograms.definitions import Definitions

log = logging.getLogger(__name__)

try:
    from histograms import _fast as _impl

    IMPLEMENTATION = "cython"
except ImportError:  # no compiler when installed: the twin behaves identically, only slower
    from histograms import _slow as _impl

    IMPLEMENTATION = "python"

log.info("histogram conversion uses the %s implementation", IMPLEMENTATION)


@dataclasses.dataclass
class ConversionResult:
    """The converted payload plus what was taken out of it and why."""

    payload: dict
    invalid: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    unknown: list[str] = dataclasses.field(default_factory=list)


def is_v4(payload: dict) -> bool:
    """v4 pings wrap the measurements in `payload`; v1 payloads carry them at the top."""
    return isinstance(payload.get("payload"), dict)


def revision_of(payload: dict) -> str | None:
    """The Histograms.json revision URL a payload was recorded against, if it says."""
    if not isinstance(payload, dict):
        return None
    candidates = []
    if is_v4(payload):
        candidates.append(payload["payload"].get("info"))
        candidates.append(
            payload.get("environment", {}).get("build")
            if isinstance(payload.get("environment"), dict)
            else None
        )
    candidates.append(payload.get("info"))
    for section in candidates:
        if isinstance(section, dict):
            revision = section.get("revision")
            if isinstance(revision, str) and revision:
                return revision
    return None


class _Converter:
    """Walks one payload, delegating each histograms object to the chosen implementation."""

    def __init__(self, definitions: Definitions, implementation) -> None:
        self.definitions = definitions
        self.impl = implementation
        self.specs = definitions.specs
        self.invalid: list[tuple[str, str]] = []
        self.unknown: list[str] = []

    def plain(self, histograms: object, prefix: str = "") -> dict:
        converted, invalid, unknown = self.impl.convert_histograms(histograms, self.specs)
        if prefix:
            self.invalid.extend((prefix + name, reason) for name, reason in invalid)
            self.unknown.extend(prefix + name for name in unknown)
        else:
            self.invalid.extend(invalid)
            self.unknown.extend(unknown)
        return converted

    def keyed(self, histograms: object, prefix: str = "") -> dict:
        converted: dict = {}
        if not isinstance(histograms, dict):
            self.invalid.append((prefix + "*", "keyedHistograms is not a JSON object"))
            return converted
        for name, by_key in histograms.items():
            definition = self.definitions.lookup(name)
            if definition is None:
                self.unknown.append(prefix + name)
                continue
            if not definition.keyed:
                self.invalid.append(
                    (prefix + name, "sent as keyed but the definition is not keyed")
                )
                continue
            if not isinstance(by_key, dict):
                self.invalid.append((prefix + name, "keyed histogram is not a JSON object of keys"))
                continue
            spec = self.specs[definition.name]
            keys: dict = {}
            for key, hist in by_key.items():
                result = self.impl.convert_one(hist, spec)
                if type(result) is str:
                    self.invalid.append((f"{prefix}{name}[{key}]", result))
                else:
                    keys[key] = result
            converted[name] = keys
        return converted


def convert_payload(
    payload: dict, definitions: Definitions, implementation=None
) -> ConversionResult:
    """Return a new payload with every histogram in compact form; the input is not modified.

    `implementation` is for tests and the benchmark (`histograms._slow` or `histograms._fast`).
    """
    converter = _Converter(definitions, implementation or _impl)
    result = dict(payload)
    if is_v4(payload):
        inner = dict(payload["payload"])
        if "histograms" in inner:
            inner["histograms"] = converter.plain(inner["histograms"])
        if "keyedHistograms" in inner:
            inner["keyedHistograms"] = converter.keyed(inner["keyedHistograms"])
        processes = inner.get("processes")
        if isinstance(processes, dict):
            inner["processes"] = {}
            for process, section in processes.items():
                if isinstance(section, dict):
                    section = dict(section)
                    if "histograms" in section:
                        section["histograms"] = converter.plain(
                            section["histograms"], f"{process}/"
                        )
                    if "keyedHistograms" in section:
                        section["keyedHistograms"] = converter.keyed(
                            section["keyedHistograms"], f"{process}/"
                        )
                inner["processes"][process] = section
        result["payload"] = inner
    else:
        if "histograms" in payload:
            result["histograms"] = converter.plain(payload["histograms"])
        result["ver"] = 2
    return ConversionResult(payload=result, invalid=converter.invalid, unknown=converter.unknown)


HISTOGRAMS_KEY = b"histograms"


@dataclasses.dataclass
class SplitPayload:
    """A v1 payload parsed without its histograms section (an empty object stands in for it
    in `payload`, at its place) plus that section, read but not yet converted."""

    payload: dict
    section: object  # _fast.Section or _slow.Section


def split_payload(data: bytes, implementation=None) -> SplitPayload | None:
    """The payload of v1 JSON text `data` with its histograms section kept apart; None when
    `data` is anything else (v4, no such section, escaped or repeated top-level keys, not
    valid JSON): the caller then parses the whole text as usual."""
    impl = implementation or _impl
    if type(data) is not bytes:
        data = bytes(data)
    start = impl.member_start(data, HISTOGRAMS_KEY)
    if start is None:
        return None
    section = impl.parse_section(data, start)
    if section is None or not impl.plain_members_after(data, section.end, HISTOGRAMS_KEY):
        return None
    try:
        payload = orjson.loads(b"".join((data[:start], b"{}", data[section.end :])))
    except orjson.JSONDecodeError:
        return None  # the general path words the error (or its fallback parser copes)
    if type(payload) is not dict or is_v4(payload):
        return None
    return SplitPayload(payload, section)


def convert_split(
    split: SplitPayload, definitions: Definitions, payload: dict | None = None
) -> ConversionResult | None:
    """`convert_payload` of the whole document, its histograms as JSON text; `payload`: the
    split's payload as changed since (e.g. a country added). None when the section turns out
    not to be valid JSON (the caller parses the whole document and reports it)."""
    converted = split.section.convert(definitions.specs, orjson.loads, orjson.dumps)
    if converted is None:
        return None
    text, invalid, unknown = converted
    result = dict(split.payload if payload is None else payload)
    result["histograms"] = orjson.Fragment(text)
    result["ver"] = 2
    return ConversionResult(payload=result, invalid=invalid, unknown=unknown)
