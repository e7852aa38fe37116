"""ingest service of telemetry-pipeline: the HTTP edge that never loses an acknowledged submission.

Modules, one job each:
    paths        which submission URLs are accepted (pure functions)
    spool        durable local spool: group-committed appends, rotation, crash recovery
    uploader     sealed spool files -> incoming store -> work queue, with retries
    app          aiohttp handlers, limits and status codes, health endpoints (`create_app`)
    server       AppRunner with `auto_decompress=False`, graceful shutdown (`serve`, `running`)
    accesslog    JSON access log line per request, request metrics
    metrics      Prometheus metrics on a private registry
    hourly_counts accepted submissions per hour into `hourly_stats`
Run it with `python -m ingest`. The record format itself lives in `pipeline.records`.
"""
