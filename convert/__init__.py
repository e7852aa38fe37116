"""convert service of telemetry-pipeline (see README)."""
