"""histograms service of telemetry-pipeline (see README)."""
