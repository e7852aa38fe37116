"""The histogram functions the converter needs, bundled so tests can pass stand-ins.

Production uses the `histograms` package (RevisionCache, convert_payload, revision_of and
its JSON codec); unit tests inject a tiny converter through `HistogramTools` instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pipeline.config import Settings


@dataclasses.dataclass(frozen=True)
class HistogramTools:
    revision_of: Callable[[dict], str | None]
    definitions: Callable[[str], Any]
    """Revision URL -> definitions; raises one of `unknown_revision` or `revision_unavailable`."""
    convert_payload: Callable[[dict, Any], Any]
    """(payload, definitions) -> object with `.payload`, `.invalid` and `.unknown`."""
    unknown_revision: tuple[type[BaseException], ...]
    revision_unavailable: tuple[type[BaseException], ...]
    loads: Callable[[bytes], Any]
    dumps: Callable[[Any], str | bytes]
    declared_definitions: Callable[[dict], Any] | None = None
    """payload -> definitions built from the layouts its histograms declare, for records whose
    revision is unavailable; None: such records are parked instead."""
    split_payload: Callable[[bytes], Any] | None = None
    """JSON text -> the payload parsed without its histograms section (`.payload`), or None
    for the general path (loads, then convert_payload); None: always the general path."""
    convert_split: Callable[[Any, Any, dict], Any] | None = None
    """(split, definitions, payload) -> like convert_payload, or None for the general path."""


def real_tools(settings: Settings) -> HistogramTools:
    """The histograms package wired to the configured cache directory and hg base URL."""
    from histograms import json_codec
    from histograms.convert import (
        IMPLEMENTATION,
        convert_payload,
        convert_split,
        revision_of,
        split_payload,
    )
    from histograms.declared import definitions_from_payload
    from histograms.revision_cache import RevisionCache, RevisionUnavailable, UnknownRevision

    cache = RevisionCache(settings.histogram_cache, base_url=settings.hg_base_url)
    return HistogramTools(
        revision_of=revision_of,
        definitions=cache.get,
        convert_payload=convert_payload,
        unknown_revision=(UnknownRevision,),
        revision_unavailable=(RevisionUnavailable,),
        loads=json_codec.loads,
        dumps=_dumps_with(json_codec.dumps),
        declared_definitions=definitions_from_payload,
        # Without the compiled loop the split path would be slower than parsing everything.
        split_payload=split_payload if IMPLEMENTATION == "cython" else None,
        convert_split=convert_split,
    )


def _dumps_with(fallback: Callable[[Any], str]) -> Callable[[Any], bytes | str]:
    """orjson for the output lines (several times faster than the alternatives on these
    payloads); the codec's own `dumps` for what orjson refuses (integers beyond 64 bits)."""
    import orjson

    def dumps(obj: Any) -> bytes | str:
        try:
            return orjson.dumps(obj)
        except TypeError:
            return fallback(obj)

    return dumps
