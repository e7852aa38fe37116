"""Tests of the `health` package."""
