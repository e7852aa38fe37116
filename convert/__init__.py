"""Convert workers: queue-driven validation and conversion into the partitioned lz4 layout.

`python -m convert [--workers N] [--drain]` runs worker processes that claim incoming batch
messages (`{"key": ..., "records": N, "bytes": N}`) from the work queue, convert every record
and write it to exactly one place:

* a published partition `<reason>/<appName>/<channel>/<version>/<build>.<date>.v2.log.<id>.lz4`
  (or `namespaces/<ns>/<docType>/<docVersion>/<date>/<id>.lz4` for the generic
  `/submit/<namespace>/...` form), one `docId<TAB>json` line per record;
* the error partition `errors/<reason_code>/<YYYYMMDD>/<id>.lz4`, one JSON line per record
  holding the raw record (base64 body, path, headers, received_ms), the reason and details;
* when the record's Histograms.json revision cannot be fetched right now: published at once
  anyway, its histograms converted with the layouts the payload declares and the record marked
  `"histogramDefinitions": {"source": "payload", "reason": ..., "revision": ...}`; its raw
  record waits in `unvalidated/<id>.tpr` in the incoming store and is re-validated (the same
  object rewritten) when the revision can be had (see convert/revalidation.py);
* a parked batch `parked/<root>-p<N>` in the incoming store, re-queued with a delay, when
  fetching the revision failed in an unforeseen way. After `--park-max-attempts` parkings such
  records go to `errors/revision_unavailable`;
* `errors/unknown_namespace` for generic namespaces and doc types not on the allow-list
  (pipeline/allow_list.py).

`<id>` is derived from the incoming key, so reprocessing a batch after a crash overwrites the
same objects and never duplicates a record. The message is acknowledged and the incoming object
deleted only after every output object is stored.

Decisions worth knowing:

* Invalid histograms do not block a record: it is published with the invalid (and unknown)
  histograms removed and listed under the top-level key `histogramErrors`
  (`{"invalid": [[name, reason], ...], "unknown": [name, ...]}`), as the original server
  published the valid ones. Such records count as `published`; the number of records that lost
  histograms is counted under source `convert_hist`, outcome `invalid_histogram` in the stats
  table. The error code `invalid_histogram` is used when a payload's histogram section cannot
  be converted at all (wrong types).
* Payloads that name no revision and carry no histograms (v4 `event`, `new-profile`, ...)
  are published unconverted; payloads with histograms but no revision go to
  `errors/missing_revision`, as do revisions that do not exist.
* Deduplication by docId uses the database table `convert_seen_docs` (docId -> first batch,
  first seen); only records about to be published take part, so a failed first attempt never
  hides a good resend. A batch owns the ids it claimed, so reprocessing the same batch does not
  see its own records as duplicates.
"""
