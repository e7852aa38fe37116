"""Tests of the `histograms` package."""
