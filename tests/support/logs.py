"""Events for log lines: a test waits until a component in another thread says it got there."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator


class _LineHandler(logging.Handler):
    def __init__(self, text: str, event: threading.Event) -> None:
        super().__init__(logging.DEBUG)
        self.text, self.event = text, event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@contextlib.contextmanager
def logged(
    text: str, event: threading.Event | None = None, logger: str = ""
) -> Iterator[threading.Event]:
    """Set `event` (a new one by default) when a record containing `text` reaches `logger`
    (root by default) while the block runs.

    The logger's level still decides which records are made (e.g. `caplog.at_level("INFO")`).
    """
    event = event or threading.Event()
    handler = _LineHandler(text, event)
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield event
    finally:
        target.removeHandler(handler)
