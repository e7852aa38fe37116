"""Tests of the `aggregates` package."""
