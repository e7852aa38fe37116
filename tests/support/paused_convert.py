"""`python -m tests.support.paused_convert POINT:N [convert's flags]`: convert, stopped mid-batch.

The crash tests SIGKILL a real `python -m convert` worker at a named point of a batch: after
N records were converted (`records:N`) or after N output objects were uploaded (`uploads:N`).
Production code carries no hook for that: this wrapper wraps `BatchProcessor.process` so that,
within one batch, the converter's `convert` and the published store's `put_file` are counted,
and the Nth call of the named point writes PAUSE_MESSAGE to stderr and blocks until the test
kills the process. Then it runs convert's own `main()` with the remaining arguments, in this
process (one worker; forked workers inherit the wrapping too).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from convert.batch import BatchProcessor

PAUSE_MESSAGE = "TEST PAUSE reached"
POINTS = ("records", "uploads")


class PausePoint:
    """Where to stop ("records" or "uploads", and the count within a batch) and how.

    `release` is never set in a worker (it waits for SIGKILL); a unit test sets it to let a
    reached pause go on.
    """

    def __init__(self, spec: str, release: threading.Event | None = None) -> None:
        point, _, count = spec.partition(":")
        if point not in POINTS or not count.isdigit():
            raise ValueError(f"pause spec {spec!r} is not records:N or uploads:N")
        self.point, self.count = point, int(count)
        self.release = release or threading.Event()
        self.was_reached = threading.Event()

    def reached(self, point: str, done: int) -> None:
        """Block here if this is the configured point and count; return at once otherwise."""
        if point == self.point and done == self.count:
            sys.stderr.write(f"{PAUSE_MESSAGE} at {point}:{done} (pid {os.getpid()})\n")
            sys.stderr.flush()
            self.was_reached.set()
            self.release.wait()


class _Counted:
    """A proxy that calls `pause.reached(point, n)` after the nth call of one method."""

    def __init__(self, inner: Any, method: str, point: str, pause: PausePoint) -> None:
        self._inner, self._method, self._point, self._pause = inner, method, point, pause
        self._calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name != self._method:
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._calls += 1
            self._pause.reached(self._point, self._calls)
            return result

        return counted


def paused_process(original: Callable[..., Any], pause: PausePoint) -> Callable[..., Any]:
    """`BatchProcessor.process` wrapped so that each batch counts its records and uploads anew."""

    def process(processor: BatchProcessor, *args: Any, **kwargs: Any) -> Any:
        converter, published = processor.converter, processor.published
        processor.converter = _Counted(converter, "convert", "records", pause)
        processor.published = _Counted(published, "put_file", "uploads", pause)
        try:
            return original(processor, *args, **kwargs)
        finally:
            processor.converter, processor.published = converter, published

    return process


def install(pause: PausePoint) -> None:
    BatchProcessor.process = paused_process(BatchProcessor.process, pause)  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    install(PausePoint(argv[0]))
    from convert.__main__ import main as convert_main

    return convert_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
