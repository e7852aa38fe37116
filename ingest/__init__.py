"""ingest service of telemetry-pipeline (see README)."""
