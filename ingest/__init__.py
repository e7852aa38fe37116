"""ingest service of telemetry-pipeline: the HTTP edge that never loses an acknowledged submission.

Modules, one job each:
    paths        which submission URLs are accepted (pure functions)
    spool        durable local spool: group-committed appends, rotation, crash recovery
    uploader     sealed spool files -> incoming store -> work queue, with retries
    http         HTTP/1.1 connections on httptools: parsing, ordering, keep-alive, deadlines
    responses    response bytes from templates (the hot path's `200 OK` made once a second)
    app          routes, limits and status codes, health endpoints (`create_app`)
    server       the listening socket, graceful shutdown (`serve`, `running`)
    slow_clients header, body, keep-alive and lingering deadlines
    errors       exceptions (refusals of the spool, a bad submission path)
    accesslog    JSON access log line per request, request metrics
    metrics      Prometheus metrics on a private registry
    hourly_counts accepted submissions per hour into `hourly_stats`
Run it with `python -m ingest`. The record format itself lives in `pipeline.records`.
"""
