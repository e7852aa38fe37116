"""One logging set-up for every service: text for people, JSON lines for log collectors.

  TELEMETRY_LOG_FORMAT=text   `2026-01-02 03:04:05,678 INFO convert[42] convert.worker: message
                              key=value` (service[pid], logger, message, fields)
  TELEMETRY_LOG_FORMAT=json   one JSON object per line: time, level, logger, message, service,
                              pid and every field the call passed (python-json-logger)
  TELEMETRY_LOG_LEVEL         DEBUG, INFO, WARNING, ERROR; `--log-level` (or `-v` for DEBUG)
                              on any service's command line wins

Record ids travel as fields, not only inside the message: a call passes them with
`extra={"docId": ...}`, and `log_context(batch=key)` adds them to every line logged inside
it (the convert worker's batch key, the scheduler's run id), so a JSON log can be searched
by them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pythonjsonlogger.json import JsonFormatter

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config import Settings

LOG_FORMATS = ("text", "json")
CHATTY = (
    "alembic",
)  # narrates every plugin and connection at INFO; pipeline.migrate logs one line
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(service)s[%(process)d] %(name)s: %(message)s"

_context: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "telemetry_log_context", default=None
)
# Attributes every LogRecord has: anything else on a record is a field a call passed.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "service",
}


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add `fields` to every line logged in this block (this thread or task)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class _AddContext(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """The classic text line, then the fields a call passed as `key=value`."""

    _second: tuple[int, str] = (-1, "")  # the last second formatted, reused within it

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The stock date and time, rendered once per second (a busy server logs thousands
        of lines a second; `time.strftime` was a fifth of the cost of each)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        ]
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {' '.join(fields)}{sep}{tail}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirected stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _BufferedStderrHandler(_StderrHandler):
    """Writes the lines to stderr in batches from a daemon thread, at most `interval` seconds
    apart (sooner when `max_lines` wait); WARNING and above are written at once with
    everything before them, and `logging.shutdown` (at exit) writes what is left.

    For a server that logs a line per request (the ingest access log): the request path only
    formats its line and queues it, never waits for a write (one `write` per batch instead of
    one per line). The price: a process killed with SIGKILL loses up to `interval` seconds of
    log lines (never data: submissions are in the spool).
    """

    def __init__(self, interval: float = 0.2, max_lines: int = 2000) -> None:
        super().__init__()
        self.interval = interval
        self.max_lines = max_lines
        self._lines: collections.deque[str] = collections.deque()  # thread-safe append/pop
        self._write_lock = threading.Lock()  # one writer at a time keeps the lines in order
        self._wake = threading.Event()
        self._closed = False
        threading.Thread(target=self._flush_periodically, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line + self.terminator)
        if record.levelno >= logging.WARNING:
            self.flush()
        elif len(self._lines) >= self.max_lines:
            self._wake.set()

    def flush(self) -> None:
        with self._write_lock:
            lines = self._lines
            batch = [lines.popleft() for _ in range(len(lines))]
            if not batch:
                return
            try:
                stream = self.stream
                stream.write("".join(batch))
                stream.flush()
            except Exception:  # a closed or broken stderr: drop the batch, as a failed emit would
                pass

    def _flush_periodically(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._wake.set()
        super().close()


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(process)d",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "process": "pid",
            },
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    return TextFormatter(TEXT_FORMAT)


def check_format(log_format: str) -> str:
    name = log_format.strip().lower()
    if name not in LOG_FORMATS:
        raise ConfigError("TELEMETRY_LOG_FORMAT", f"must be text or json, got {log_format!r}")
    return name


def check_level(level: str) -> str:
    name = level.strip().upper()
    if name not in LEVELS:
        raise ConfigError(
            "TELEMETRY_LOG_LEVEL", f"must be one of {', '.join(LEVELS)}, got {level!r}"
        )
    return name


def setup_logging(
    service: str,
    level: str | None = None,
    *,
    default_level: str = "INFO",
    settings: Settings | None = None,
    buffered: bool = False,
) -> None:
    """Send every logger's lines to stderr in TELEMETRY_LOG_FORMAT at the chosen level.

    `level` (a --log-level flag) wins over TELEMETRY_LOG_LEVEL, which wins over the service's
    `default_level`. Safe to call again (a forked worker, a test): it replaces its handler.
    `buffered` writes INFO lines in batches (see `_BufferedStderrHandler`).
    """
    if settings is None:  # a tool that reads no other setting: TELEMETRY_LOG_* still apply
        from pipeline.config import load_settings

        settings = load_settings()
    log_format, configured = settings.log_format, settings.log_level
    log_format = check_format(log_format)
    chosen = check_level(level or configured or default_level)
    handler = _BufferedStderrHandler() if buffered else _StderrHandler()
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(_AddContext(service))
    handler._telemetry = True  # type: ignore[attr-defined] - marks the handler we own
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_telemetry", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(chosen)
    for name in CHATTY:  # their INFO lines say nothing an operator needs (DEBUG shows them)
        logging.getLogger(name).setLevel(logging.NOTSET if chosen == "DEBUG" else logging.WARNING)


def add_log_level_argument(
    parser: argparse.ArgumentParser, default_help: str = "INFO", **kwargs: object
) -> None:
    """The `--log-level LEVEL` flag every service takes, with `-v` as a short way to DEBUG."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        metavar="LEVEL",
        help=f"{', '.join(LEVELS)} (default: TELEMETRY_LOG_LEVEL, else {default_help}); "
        "TELEMETRY_LOG_FORMAT=json logs one JSON object per line",
        **kwargs,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const="DEBUG",
        help="the same as --log-level DEBUG",
        **kwargs,
    )
