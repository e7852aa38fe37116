"""mapreduce service of telemetry-pipeline (see README)."""
