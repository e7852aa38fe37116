"""Aggregates of published telemetry: the data behind the /telemetry dashboards.

The role of the 2014 telemetry.mozilla.org aggregator and today's GLAM: for every submission
date, sum each histogram (top-level, keyed, per process) and each simple measure over every
combination of channel, version, build ID, doc type, application, OS, OS version and
architecture, keep the bucket lower bounds and kind, and count submissions.

Modules, in the order data flows through them:

``extract``      pure: one published record -> its dimensions and per-metric vectors
``_scan``        optional Cython fast path of the mapper: compact histograms read straight from
                 the record's text (falls back to ``extract``'s orjson path, same results)
``job_script``   the MapReduce job script (map/combine/reduce) built on ``extract``
``compute``      runs that script for some submission dates on the configured engine and
                 resolves bucket layouts and descriptions from each revision's Histograms.json
``dayfile``      the compact, gzip JSON file one submission date becomes (published to the
                 public store as ``<job>/data/days/<YYYYMMDD>.json.gz``, with ``index.json``)
``stats``        pure: mean, percentiles and the regression hint from bucket counts
``readcache``    loads day files into an SQLite read cache and answers the dashboard's queries
``__main__``     ``python -m aggregates job|show``

Imports: pipeline, histograms and mapreduce only (tests/repo/test_dependency_direction.py).
"""
