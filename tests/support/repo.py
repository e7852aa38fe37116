"""The repository the repository-wide checks read: its root and its production packages."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Every production package, bottom of the dependency picture first (docs/architecture.md).
PACKAGES = (
    "pipeline",
    "histograms",
    "ingest",
    "convert",
    "mapreduce",
    "aggregates",
    "scheduler",
    "health",
    "dashboard",
    "launcher",
)
