"""Exceptions of the MapReduce engine, each with a message that says what to change."""

from __future__ import annotations

from pipeline.errors import PipelineError


class MapReduceError(PipelineError):
    """Base class for errors raised by `mapreduce` on purpose."""


class JobScriptInvalid(MapReduceError):
    """The job script cannot be loaded or does not define `map(key, dims, value, context)`."""


class JobScriptFailed(MapReduceError):
    """The job script raised while mapping, combining or reducing one key.

    `phase` is map/combine/reduce/setup_reduce; `key` and `file` say where (file is empty
    outside map), `traceback` is the formatted traceback from the process that ran it.
    """

    def __init__(self, phase: str, key: object, file: str, traceback: str) -> None:
        self.phase = phase
        self.key = key
        self.file = file
        self.traceback = traceback
        where = f" in file {file!r}" if file else ""
        super().__init__(f"job script raised in {phase}() for key {key!r}{where}\n{traceback}")

    def __reduce__(self):
        return (type(self), (self.phase, self.key, self.file, self.traceback))


class BadInputData(MapReduceError):
    """Input data is corrupt and --strict asked to fail instead of skipping it."""

    def __init__(self, file: str, problem: str) -> None:
        self.file = file
        self.problem = problem
        super().__init__(f"bad input data in {file!r}: {problem} (run without --strict to skip it)")

    def __reduce__(self):
        return (type(self), (self.file, self.problem))


class InputUnavailable(MapReduceError):
    """An input file could not be fetched or read (store down, file vanished from --data-dir)."""

    def __init__(self, file: str, problem: str) -> None:
        self.file = file
        self.problem = problem
        super().__init__(f"cannot read input {file!r}: {problem}")

    def __reduce__(self):
        return (type(self), (self.file, self.problem))


class KeyNotSerialisable(MapReduceError):
    """A key written with context.write cannot be encoded canonically (it must be JSON-able)."""


class EngineFailure(MapReduceError):
    """A mapper or reducer process died without reporting (killed, out of memory)."""
