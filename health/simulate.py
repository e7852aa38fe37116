"""Synthetic hourly pipeline traffic with injected outages, to test and demonstrate alerts.

The shape follows real Firefox telemetry: release dwarfs the other channels, every channel
has a morning and an evening peak (UTC), weekends are quieter, volumes grow slowly, and
every hour and day is a little noisy. Convert outcomes are drawn per hour from small usual
error rates. The `outages` scenario adds the incidents the pipeline has actually had:

- a channel stops for six days (beta: a broken update server URL);
- a gradual decline over about ten days (release falls to 60%, then the fix ships);
- a validation change that rejects a share of all submissions (invalid_histogram);
- revisions missing upstream for a fresh nightly (missing_revision jumps for half a day).

`generate()` is pure (seeded `random.Random`); `write()` stores the counts through
`pipeline.stats.add_many`; `main()` is `python -m health.simulate`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import math
import random
import sys
from collections.abc import Sequence

from sqlalchemy import Engine, delete

from health.anomaly import (
    DAY,
    DEFAULT_SETTINGS,
    HOUR,
    KIND_DECLINE,
    KIND_DROP,
    KIND_ERROR_RATE,
    DetectorSettings,
    Incident,
    StatsFrame,
    detect_all,
)
from pipeline import outcomes as oc
from pipeline.stats import HourlyStat, StatKey, add_many

log = logging.getLogger(__name__)

CHANNEL_VOLUME = {"release": 4000.0, "beta": 500.0, "nightly": 150.0, "esr": 80.0}  # mean per hour
DOC_TYPES = {"saved-session": 0.85, "idle-daily": 0.15}
USUAL_ERROR_RATES = {
    oc.BAD_JSON: 0.002,
    oc.CORRUPT_GZIP: 0.0005,
    oc.TOO_LARGE: 0.0001,
    oc.BAD_PATH: 0.0002,
    oc.MISSING_REVISION: 0.001,
    oc.REVISION_UNAVAILABLE: 0.0005,
    oc.INVALID_HISTOGRAM: 0.005,
    oc.DUPLICATE: 0.003,
}
WEEKDAY_FACTOR = (1.0, 1.02, 1.03, 1.01, 0.97, 0.78, 0.72)  # Monday .. Sunday
HISTORY_DAYS = 29  # outages start after this, so the detectors have four weeks of baseline
SHORT_HISTORY_DAYS = 15  # for runs under 60 days: two weeks, the least the detectors judge
SCENARIOS = ("clean", "outages")


@dataclasses.dataclass(frozen=True)
class InjectedIncident:
    """Ground truth: what the simulator broke, where, and when (end exclusive)."""

    kind: str  # the alert kind that should catch it
    subject: str  # channel or error reason
    start: dt.datetime
    end: dt.datetime
    description: str


@dataclasses.dataclass
class Simulation:
    start: dt.datetime
    end: dt.datetime
    counts: list[tuple[dt.datetime, str, dict[StatKey, int]]]  # (hour, source, counts)
    truth: list[InjectedIncident]

    def frame(self) -> StatsFrame:
        """The simulated counts as the detectors see them (no database needed)."""
        rows = [
            (hour, source, outcome, channel, doc_type, n)
            for hour, source, counts in self.counts
            for (outcome, channel, doc_type), n in counts.items()
        ]
        return StatsFrame.from_rows(rows, self.start, self.end)


def daily_shape(hour: int) -> float:
    """Relative volume by UTC hour: a morning and a larger evening peak, a deep night trough."""

    def bump(centre: float, width: float) -> float:
        distance = min(abs(hour - centre), 24 - abs(hour - centre))
        return math.exp(-((distance / width) ** 2))

    return 0.3 + 0.9 * bump(9, 2.5) + 1.1 * bump(20, 3.0)


_SHAPE_MEAN = sum(daily_shape(h) for h in range(24)) / 24


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth for small means, normal approximation above)."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, product = math.exp(-lam), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        return k
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def outage_plan(start: dt.datetime, history_days: int = HISTORY_DAYS) -> list[InjectedIncident]:
    """The incidents of the `outages` scenario, placed after `history_days` of clean history."""
    base = (start + history_days * DAY).replace(hour=0)
    return [
        InjectedIncident(
            KIND_DROP,
            "beta",
            base + 1 * DAY + 13 * HOUR,
            base + 7 * DAY + 13 * HOUR,
            "beta stops sending for six days",
        ),
        InjectedIncident(
            KIND_DECLINE,
            "release",
            base + 9 * DAY,
            base + 19 * DAY,
            "release declines gradually to 60% over ten days, then recovers",
        ),
        InjectedIncident(
            KIND_ERROR_RATE,
            oc.INVALID_HISTOGRAM,
            base + 21 * DAY + 15 * HOUR,
            base + 24 * DAY + 15 * HOUR,
            "a validation change rejects 12% of submissions as invalid_histogram for three days",
        ),
        InjectedIncident(
            KIND_ERROR_RATE,
            oc.MISSING_REVISION,
            base + 26 * DAY + 8 * HOUR,
            base + 26 * DAY + 20 * HOUR,
            "45% of nightly submissions fail with missing_revision for twelve hours",
        ),
    ]


def _effects(
    truth: Sequence[InjectedIncident], hour: dt.datetime, channel: str
) -> tuple[float, dict[str, float]]:
    """Volume factor and extra error shares that the injected incidents impose on one hour."""
    factor, extra = 1.0, {}
    for incident in truth:
        if not incident.start <= hour < incident.end:
            continue
        if incident.subject == "beta" and channel == "beta":
            factor = 0.0
        elif incident.subject == "release" and channel == "release":
            progress = (hour - incident.start) / (incident.end - incident.start)
            factor *= 1.0 - 0.4 * progress
        elif incident.subject == oc.INVALID_HISTOGRAM:
            extra[oc.INVALID_HISTOGRAM] = 0.12
        elif incident.subject == oc.MISSING_REVISION and channel == "nightly":
            extra[oc.MISSING_REVISION] = 0.45
    return factor, extra


def generate(
    days: int = 60, seed: int = 0, scenario: str = "outages", end: dt.datetime | None = None
) -> Simulation:
    """Simulate `days` days of hourly counts for both sources ending at `end` (default: now)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
    if days < 1:
        raise ValueError("days must be at least 1")
    if end is None:
        end = dt.datetime.now(dt.UTC)
    if end.tzinfo is not None:
        end = end.astimezone(dt.UTC).replace(tzinfo=None)
    end = end.replace(minute=0, second=0, microsecond=0)
    start = end - days * DAY
    history = HISTORY_DAYS if days >= 60 else SHORT_HISTORY_DAYS
    truth = outage_plan(start, history) if scenario == "outages" else []
    truth = [t for t in truth if t.end <= end]
    rng = random.Random(seed)
    day_noise = {}
    counts: list[tuple[dt.datetime, str, dict[StatKey, int]]] = []
    for index in range(days * 24):
        hour = start + index * HOUR
        accepted: dict[StatKey, int] = {}
        converted: dict[StatKey, int] = {}
        for channel, volume in CHANNEL_VOLUME.items():
            key = (channel, hour.date())
            if key not in day_noise:
                day_noise[key] = rng.lognormvariate(0, 0.03)
            factor, extra = _effects(truth, hour, channel)
            mean = (
                volume
                * daily_shape(hour.hour)
                / _SHAPE_MEAN
                * WEEKDAY_FACTOR[hour.weekday()]
                * (1 + 0.001 * index / 24)
                * day_noise[key]
                * rng.lognormvariate(0, 0.04)
                * factor
            )
            for doc_type, share in DOC_TYPES.items():
                n = poisson(rng, mean * share)
                if not n:
                    continue
                accepted[(oc.ACCEPTED, channel, doc_type)] = n
                remaining = n
                for reason, rate in USUAL_ERROR_RATES.items():
                    failed = min(remaining, poisson(rng, n * (rate + extra.get(reason, 0.0))))
                    if failed:
                        converted[(reason, channel, doc_type)] = failed
                        remaining -= failed
                converted[(oc.PUBLISHED, channel, doc_type)] = remaining
        counts.append((hour, oc.SOURCE_INGEST, accepted))
        counts.append((hour, oc.SOURCE_CONVERT, converted))
    return Simulation(start, end, counts, truth)


def write(engine: Engine, simulation: Simulation, replace: bool = False) -> None:
    """Store the simulated counts; `replace` first deletes stats in the simulated range."""
    if replace:
        with engine.begin() as conn:
            conn.execute(
                delete(HourlyStat).where(
                    HourlyStat.hour >= simulation.start, HourlyStat.hour < simulation.end
                )
            )
    add_many(engine, ((hour, source, counts) for hour, source, counts in simulation.counts))


def detect(simulation: Simulation, cfg: DetectorSettings = DEFAULT_SETTINGS) -> list[Incident]:
    """Run the detectors over the whole simulated range in one pass."""
    return detect_all(simulation.frame(), cfg)


def _parser() -> argparse.ArgumentParser:
    from pipeline.cli import add_common_arguments
    from pipeline.config import load_settings

    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="python -m health.simulate",
        description=(
            "Write realistic simulated hourly traffic (ingest and convert counts per channel) "
            "into the hourly_stats table, optionally with injected outages, print the injected "
            "incidents, then run the anomaly detectors over it and store their alerts so the "
            "health page has something to show."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="effective settings:\n" + settings.describe(),
    )
    parser.add_argument(
        "--days", type=int, default=60, help="days of traffic to simulate (default: 60)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed, same traffic (default: 0)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help=f"SQLAlchemy URL to write to (default: TELEMETRY_DATABASE_URL = {settings.database_url})",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="outages",
        help="clean: seasonal traffic only; outages: plus a six-day channel stop, a gradual "
        "decline, a validation change and a missing_revision jump, after four weeks of clean "
        "history (two weeks when --days is under 60; outages that would not end in the range "
        "are left out) (default: outages)",
    )
    parser.add_argument(
        "--end",
        type=dt.datetime.fromisoformat,
        default=None,
        help="UTC end of the simulated range, ISO format (default: now, so the health page's "
        "last 60 days show it)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="delete stored stats and alerts in the simulated range first (default: refuse to "
        "add to a range that already has stats)",
    )
    parser.add_argument(
        "--no-detect",
        action="store_true",
        help="only write the counts; do not run the detectors or store alerts",
    )
    add_common_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from health import alerts
    from pipeline.cli import apply_config_flag, setup_logging_from_args
    from pipeline.config import load_settings
    from pipeline.db import init_db, make_engine
    from pipeline.errors import ConfigError

    try:
        apply_config_flag(argv)
        args = _parser().parse_args(argv)
        setup_logging_from_args("health.simulate", args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.days < 1:
        print("error: --days must be at least 1", file=sys.stderr)
        return 2
    try:
        url = args.database_url or load_settings().database_url
        engine = make_engine(url, "--database-url")
        init_db(engine)
    except (ConfigError, SQLAlchemyError) as exc:
        print(f"error: cannot open the database: {exc}", file=sys.stderr)
        return 2
    simulation = generate(args.days, args.seed, args.scenario, args.end)
    if args.replace:
        alerts.delete_alerts(engine, simulation.start, simulation.end)
    else:
        with engine.connect() as conn:
            existing = conn.execute(
                select(func.count())
                .select_from(HourlyStat)
                .where(HourlyStat.hour >= simulation.start, HourlyStat.hour < simulation.end)
            ).scalar_one()
        if existing:
            print(
                f"error: {url} already has {existing} hourly_stats rows between {simulation.start} "
                f"and {simulation.end}; pass --replace to overwrite them",
                file=sys.stderr,
            )
            return 2
    write(engine, simulation, replace=args.replace)
    found = None if args.no_detect else detect(simulation)
    if found is not None:
        alerts.record_incidents(engine, found, now=simulation.end, notified=True)
    engine.dispose()  # everything is stored before printing: a closed pipe loses nothing
    print(
        f"simulated {args.days} days ({simulation.start:%Y-%m-%d %H:%M} to "
        f"{simulation.end:%Y-%m-%d %H:%M} UTC), scenario {args.scenario}, seed {args.seed}, into {url}"
    )
    print(f"injected incidents: {len(simulation.truth)}")
    for item in simulation.truth:
        print(
            f"  {item.kind:<10} {item.subject:<18} {item.start:%Y-%m-%d %H:%M} .. "
            f"{item.end:%Y-%m-%d %H:%M}  {item.description}"
        )
    if found is not None:
        print(f"detected alerts: {len(found)}")
        for incident in found:
            until = "ongoing" if incident.until is None else f"{incident.until:%Y-%m-%d %H:%M}"
            print(
                f"  {incident.kind:<10} {incident.subject:<18} {incident.since:%Y-%m-%d %H:%M} .. "
                f"{until}  {incident.details}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
