"""scheduler service of telemetry-pipeline (see README)."""
