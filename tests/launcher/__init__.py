"""Tests of the `launcher` package."""
