"""The job-script contract: what a script defines and the `context` it writes through.

A job script is a plain Python file defining

    map(key, dims, value, context)          required; once per record
    combine(key, values, context)           optional; applied to a mapper's output as it spills
    reduce(key, values, context)            optional; once per distinct key (no reduce: map-only)
    setup_reduce(context)                   optional; once per reducer before its first reduce

`key` is the record's docId, `dims` the list of dimension values parsed from the object's
path in `pipeline.layout.DIMENSIONS` order (as the original telemetry-server did), `value`
the record's JSON text. `values` is an iterator, never a list: a key with a million values
is streamed. Each engine loads the script from its source text, so the same file runs
unchanged in local processes and on Dask workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mapreduce.errors import JobScriptInvalid

Writer = Callable[[Any, Any], None]


class Context:
    """What a job script writes through: `context.write(key, value)`.

    The engine decides where a write goes (a spill partition, a combine buffer or the output),
    so the script never knows which engine or phase it runs in.
    """

    __slots__ = ("write",)

    def __init__(self, write: Writer) -> None:
        self.write = write


@dataclasses.dataclass(frozen=True)
class JobScript:
    """A loaded job script; picklable as its source so workers can load it themselves."""

    filename: str
    source: str
    map: Callable[..., Any]
    reduce: Callable[..., Any] | None
    combine: Callable[..., Any] | None
    setup_reduce: Callable[..., Any] | None

    @property
    def map_only(self) -> bool:
        return self.reduce is None

    def __reduce__(self):
        return (load_source, (self.source, self.filename))


_LOADED: dict[str, JobScript] = {}


def load_job_script(path: str | Path) -> JobScript:
    """Read and load the job script at `path`."""
    try:
        source = Path(path).read_text()
    except OSError as exc:
        raise JobScriptInvalid(f"cannot read job script {str(path)!r}: {exc.strerror}") from exc
    return load_source(source, str(path))


def load_source(source: str, filename: str) -> JobScript:
    """Load a job script from its source text (once per process per distinct source).

    The module is registered in `sys.modules` under a name derived from the source hash, so
    objects of classes the script defines can be pickled into spills and read back.
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    cached = _LOADED.get(digest)
    if cached is not None:
        return cached
    name = f"mapreduce_job_{digest}"
    module = types.ModuleType(name)
    module.__file__ = filename
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise JobScriptInvalid(f"job script {filename!r} does not compile: {exc}") from exc
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        del sys.modules[name]
        raise JobScriptInvalid(f"job script {filename!r} raised while loading: {exc!r}") from exc
    functions = {}
    for attr in ("map", "reduce", "combine", "setup_reduce"):
        fn = module.__dict__.get(attr)
        if fn is not None and not callable(fn):
            raise JobScriptInvalid(f"job script {filename!r}: {attr} is not a function")
        functions[attr] = fn
    if functions["map"] is None:
        raise JobScriptInvalid(
            f"job script {filename!r} defines no map(key, dims, value, context) function"
        )
    script = JobScript(filename=filename, source=source, **functions)
    _LOADED[digest] = script
    return script
