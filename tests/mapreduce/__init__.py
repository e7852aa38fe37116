"""Tests of the `mapreduce` package."""
