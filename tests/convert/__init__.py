"""Tests of the `convert` package."""
