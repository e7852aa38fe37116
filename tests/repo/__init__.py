"""Tests of the repository as a whole: docs, imports, errors, deployment, the services' CLIs."""
