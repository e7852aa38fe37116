"""The flags every entry point shares, and logging set up from them and the settings.

Each `python -m <service>` builds its own parser (its flags, its `--help` epilog of the settings
it reads) but takes the same three common flags the same way:

- `--config FILE`: the TOML settings file (as TELEMETRY_CONFIG; top-level keys for everything,
  `[scheduler]` and `[dashboard]` tables). It must be applied before the settings are read,
  and most entry points read them to build `--help`, so `main` calls `apply_config_flag(argv)`
  first; the flag is also declared on the parser so that `--help` shows it and parsing takes it.
- `--log-level LEVEL` and `-v` (DEBUG) over TELEMETRY_LOG_LEVEL; services default to INFO,
  tools and subcommands to WARNING.
- `--log-format text|json`, over TELEMETRY_LOG_FORMAT.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from pipeline.config import Settings, load_settings, use_config_file
from pipeline.logs import LOG_FORMATS, add_log_level_argument, setup_logging


def apply_config_flag(argv: Sequence[str] | None = None) -> None:
    """Make a `--config FILE` in `argv` (None: sys.argv) the settings file before anything
    reads the settings; a missing or broken file is a ConfigError naming TELEMETRY_CONFIG."""
    early = argparse.ArgumentParser(add_help=False)  # abbreviations as the full parser takes them
    early.add_argument("--config")
    known, _ = early.parse_known_args(argv)
    if known.config:
        use_config_file(known.config)


def add_common_arguments(
    parser: argparse.ArgumentParser, log_level_default: str = "INFO", *, suppress: bool = False
) -> None:
    """Add `--config`, `--log-level` and `--log-format` to `parser`. `suppress`: a parent
    parser of subcommands, whose unset flags must not overwrite the main parser's values."""
    unset = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (default: TELEMETRY_CONFIG): top-level keys as the TELEMETRY_* "
        "variables in lower case, [scheduler] and [dashboard] tables; variables win over it",
        **unset,
    )
    add_log_level_argument(parser, log_level_default, **unset)
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text, or json: one JSON object per line (default: TELEMETRY_LOG_FORMAT, else text)",
        **unset,
    )


def add_metrics_port_argument(
    parser: argparse.ArgumentParser, settings: Settings, *, note: str = ""
) -> None:
    """Add `--metrics-port` (over TELEMETRY_METRICS_PORT) of a service that serves its own
    /metrics and heartbeats (pipeline.metrics); `note` adds what differs for this service."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=settings.metrics_port,
        metavar="PORT",
        help="serve Prometheus /metrics, /__heartbeat__ and /__lbheartbeat__ on this port "
        f"{note}(default: {settings.metrics_port}, TELEMETRY_METRICS_PORT; 0: off)",
    )


def with_log_format(settings: Settings, args: argparse.Namespace) -> Settings:
    """`settings` with `--log-format` applied, for a service that hands its settings on to the
    processes it starts (they then log in the same format)."""
    log_format = getattr(args, "log_format", None)
    return dataclasses.replace(settings, log_format=log_format) if log_format else settings


def setup_logging_from_args(
    service: str,
    args: argparse.Namespace,
    settings: Settings | None = None,
    *,
    default_level: str = "INFO",
    buffered: bool = False,
) -> None:
    """Logging as the common flags say, else as the settings say (loaded when not given),
    else `default_level`."""
    setup_logging(
        service,
        getattr(args, "log_level", None),
        default_level=default_level,
        settings=with_log_format(settings or load_settings(), args),
        buffered=buffered,
    )
