"""Histogram definitions, bucket layouts, the revision cache and payload conversion.

Firefox sends each histogram with its own bucket layout; the pipeline stores the compact form
of docs/formats.md ("Published layout") instead, which needs the definitions of the exact
Histograms.json revision the payload names. This package is that whole chain.

Public API (the convert workers use these names; everything else is internal):

``histograms.definitions``
    ``load_definitions(source: str | Path | bytes) -> Definitions``: parse any Histograms.json
    (2013 C++ constants and arithmetic included; a ``str`` not starting with ``{`` is a path).
    ``Definitions`` is a read-only mapping ``name -> HistogramDefinition`` (fields ``name, kind,
    low, high, bucket_count, keyed, buckets`` (tuple of lower bounds), ``labels``, ``symbolic``;
    property ``kind_code``); ``Definitions.lookup(name)`` also resolves Firefox's ``STARTUP_``
    copies; ``Definitions.errors`` lists ``(name, reason)`` for definitions that could not be
    understood, while the rest stay usable. ``DefinitionError`` is raised only when the whole
    file is unusable (unreadable, not JSON, not an object).

``histograms.buckets``
    ``exponential_buckets(low, high, n)``, ``linear_buckets(low, high, n)``,
    ``layout_for(kind, low, high, n) -> tuple[int, ...]``: lower bounds exactly as Firefox
    computes them.

``histograms.revision_cache``
    ``RevisionCache(cache_dir, base_url="https://hg.mozilla.org", timeout=10, retries=3,
    memory_entries=32, negative_ttl=300)``; ``.get(revision_url) -> Definitions``.
    Errors: ``RevisionError`` (base, a ``pipeline.errors.PipelineError``; ``.revision_url``,
    ``.problem``), ``UnknownRevision`` (404/410 or malformed URL: permanent, park the record)
    and ``RevisionUnavailable`` (network, timeout, 5xx, unusable body: retry later). Failures
    are remembered for ``negative_ttl`` seconds. ``RevisionCache.from_settings(settings)``
    uses TELEMETRY_HISTOGRAM_CACHE and TELEMETRY_HG_BASE_URL. Safe to share between threads.

``histograms.convert``
    ``convert_payload(payload: dict, definitions: Definitions) -> ConversionResult`` with
    ``.payload`` (new dict, histograms as compact arrays
    ``[count_0..count_{n-1}, sum, log_sum, log_sum_squares, sum_squares_lo, sum_squares_hi]``,
    missing statistics -1; v1 payloads get ``ver`` 2), ``.invalid: list[tuple[str, str]]``
    (name, reason) and ``.unknown: list[str]``; both are removed from the output. Names outside
    the top level are qualified: ``content/NAME`` (process histograms), ``NAME[key]`` (one key
    of a keyed histogram); ``*`` stands for a whole malformed section.
    ``split_payload(data: bytes) -> SplitPayload | None`` and ``convert_split(split,
    definitions, payload=None) -> ConversionResult | None``: the same conversion for v1 payloads
    given as JSON text, without parsing their histograms section into dicts (the result's
    ``histograms`` is an ``orjson.Fragment``; byte for byte the same after ``orjson.dumps``);
    None means "use loads + convert_payload".
    ``revision_of(payload) -> str | None``. ``IMPLEMENTATION`` is ``"cython"`` or ``"python"``
    (logged at import).

``histograms.json_codec``
    ``loads(data: bytes | str)`` (raises ``JSONDecodeError``, a ValueError), ``dumps(obj) -> str``
    and ``dumps_bytes(obj) -> bytes``. orjson, falling back to ujson (see the module docstring
    for the measured reason).

Command line: ``python -m histograms buckets FILE`` and
``python -m histograms convert PAYLOAD [--cache DIR] [--base-url URL]``.
"""
