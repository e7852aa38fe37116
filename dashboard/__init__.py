"""dashboard service of telemetry-pipeline (see README)."""
