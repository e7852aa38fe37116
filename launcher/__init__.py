"""The one command that starts the whole pipeline on one machine (`make run`).

- `runall`: starts ingest, convert, the scheduler, the health watcher and the dashboard as
  child processes, prints their addresses, stops them on Ctrl-C (`python -m launcher`, also
  installed as the `telemetry-pipeline` console script).
- `demo`: the demo submissions and revision-cache seeding for a new data directory.

It sits above every service: it launches them by module name and may import any of them
(tests/repo/test_dependency_direction.py counts a launch by name as an import).
"""
