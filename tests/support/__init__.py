"""Helpers shared by the tests: real servers, builders of batches and tarballs, dashboard sign-in."""
