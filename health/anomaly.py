"""Pure anomaly detectors over hourly pipeline counts.

Telemetry traffic is strongly seasonal: a daily double peak, quieter weekends, a slow trend.
A fixed threshold would either page every Sunday night or miss a channel going silent at
noon, so every detector compares a moment with the *same moment of previous weeks* (or, for
error rates, with the usual level of the previous weeks) using medians, which a past outage
cannot drag far, and a tolerance from counting noise plus the median absolute deviation.

Three detectors, each producing `Incident`s (consecutive bad steps merged into one, closed
only after a few good steps so a borderline series does not flap):

- `detect_drops`: submissions of one channel in a short window fall well below the median
  of the same hours of the previous weeks (a channel stops, an edge server dies).
- `detect_declines`: daily totals stay below the same weekday of previous weeks for several
  consecutive days (a client-side bug slowly spreading, an update not reaching people).
- `detect_rate_rises`: the share of converted records failing with one reason (or with any
  invalid reason) jumps above its usual level (a validation change, hg.mozilla.org missing
  revisions).

No I/O here: `StatsFrame.from_rows` turns `pipeline.stats.read_counts` rows into series and
`detect_all` runs everything; `health.alerts` stores and mails the results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
from collections.abc import Iterable, Sequence

from pipeline.outcomes import DUPLICATE, PARKED, PUBLISHED, SOURCE_CONVERT, SOURCE_INGEST

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
WEEK_HOURS = 7 * 24
MAD_TO_SIGMA = 1.4826  # scales a median absolute deviation to a normal standard deviation

KIND_DROP = "drop"
KIND_DECLINE = "decline"
KIND_ERROR_RATE = "error_rate"
KINDS = (KIND_DROP, KIND_DECLINE, KIND_ERROR_RATE)

INVALID = "invalid"  # subject of the aggregate invalid-record rate (every reason but duplicate)

StatRow = tuple[dt.datetime, str, str, str, str, int]  # as pipeline.stats.read_counts returns


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
    """Thresholds of the detectors; the defaults give zero alerts on clean simulated traffic."""

    baseline_weeks: int = 4  # same hour-of-week / weekday taken from this many previous weeks
    min_baseline_weeks: int = 2  # fewer than this: no verdict (a new pipeline is not an outage)
    # drops
    drop_window_hours: int = 4
    drop_ratio: float = 0.5  # seen below this share of expected ...
    drop_z: float = 4.0  # ... and below expected by this many standard deviations
    drop_min_expected: float = 30.0  # expected submissions in the window; below: no verdict
    drop_recover_hours: int = 3
    # gradual declines
    decline_ratio: float = 0.92
    decline_days: int = 3  # consecutive days below the ratio before alerting
    decline_z: float = 2.5
    decline_min_expected: float = 200.0
    decline_recover_days: int = 2
    # error rates
    rate_window_hours: int = 6
    rate_history_days: int = 28
    rate_min_history_days: int = 3
    rate_ratio: float = 2.0  # seen rate at least this multiple of the usual rate ...
    rate_min_rise: float = 0.002  # ... and at least this much higher in absolute terms
    rate_z: float = 4.0
    rate_min_count: int = 20  # errors in the window; fewer is never an alert
    rate_min_total: int = 200  # converted records in the window; fewer: no verdict
    rate_recover_hours: int = 3

    @property
    def history_hours(self) -> int:
        """Hours of stats before the evaluated range that the baselines need."""
        return max(
            self.baseline_weeks * WEEK_HOURS + self.drop_window_hours,
            self.rate_history_days * 24 + 24,
        )


DEFAULT_SETTINGS = DetectorSettings()


@dataclasses.dataclass(frozen=True)
class Incident:
    """One anomaly: what (`kind`), where (`subject`: a channel or an error reason), when.

    `until` is the first hour that was normal again (None while ongoing); `detected_at` is
    when the evidence was complete (end of the confirming hour or day). For drops and
    declines `expected`/`seen` are submission counts summed over the bad period; for error
    rates they are the usual and the observed share of converted records.
    """

    kind: str
    subject: str
    since: dt.datetime
    until: dt.datetime | None
    detected_at: dt.datetime
    expected: float
    seen: float
    details: str

    @property
    def ongoing(self) -> bool:
        return self.until is None

    def overlaps(self, other: Incident) -> bool:
        far = dt.datetime.max
        return self.since < (other.until or far) and other.since < (self.until or far)


@dataclasses.dataclass
class StatsFrame:
    """Hourly series on a contiguous grid of `hours` hours starting at `start` (naive UTC).

    `submissions`: ingest `accepted` per channel; `converted`: every convert outcome summed
    over channels; `reasons`: convert error reasons (all but `published`) over channels;
    `parked`: records put aside until their revision can be fetched, kept out of `converted`
    and `reasons` (they are counted again when they are converted, and are not invalid).
    Hours without rows are zero: no data for an hour is exactly what an outage looks like.
    """

    start: dt.datetime
    hours: int
    submissions: dict[str, list[int]]
    converted: list[int]
    reasons: dict[str, list[int]]
    parked: list[int] = dataclasses.field(default_factory=list)

    @classmethod
    def from_rows(cls, rows: Iterable[StatRow], start: dt.datetime, end: dt.datetime) -> StatsFrame:
        """Build the grid [start, end) from `read_counts` rows; rows outside it are ignored."""
        start = _floor_hour(start)
        hours = max(0, int((_floor_hour(end) - start) / HOUR))
        frame = cls(start, hours, {}, [0] * hours, {}, [0] * hours)
        for hour, source, outcome, channel, _doc_type, count in rows:
            index = int((hour - start) / HOUR)
            if not 0 <= index < hours:
                continue
            if source == SOURCE_INGEST:
                frame.submissions.setdefault(channel, [0] * hours)[index] += count
            elif source == SOURCE_CONVERT and outcome == PARKED:
                frame.parked[index] += count
            elif source == SOURCE_CONVERT:
                frame.converted[index] += count
                if outcome != PUBLISHED:
                    frame.reasons.setdefault(outcome, [0] * hours)[index] += count
        return frame

    def hour_at(self, index: int) -> dt.datetime:
        return self.start + index * HOUR

    def index_of(self, moment: dt.datetime) -> int:
        return int((_floor_hour(moment) - self.start) / HOUR)

    def invalid(self) -> list[int]:
        """Per-hour count of invalid records: every error reason except duplicates."""
        total = [0] * self.hours
        for reason, series in self.reasons.items():
            if reason != DUPLICATE:
                total = [a + b for a, b in zip(total, series, strict=True)]
        return total


def _floor_hour(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclasses.dataclass
class _Run:
    start: int
    detected: int
    end: int | None = None  # first index of the recovery streak


def merge_runs(states: Sequence[bool | None], confirm: int = 1, recover: int = 1) -> list[_Run]:
    """Merge per-step verdicts (True bad, False good, None unknown) into incidents.

    An incident opens after `confirm` consecutive bad steps (starting at the first of them)
    and closes after `recover` consecutive good steps (ending at the first of them). Unknown
    steps (too little volume to judge) neither open nor close anything.
    """
    runs: list[_Run] = []
    current: _Run | None = None
    bad_streak = bad_start = good_streak = good_start = 0
    for index, state in enumerate(states):
        if current is None:
            if state is True:
                bad_start = index if bad_streak == 0 else bad_start
                bad_streak += 1
                if bad_streak >= confirm:
                    current = _Run(bad_start, index)
                    good_streak = 0
            elif state is False:
                bad_streak = 0
        elif state is False:
            good_start = index if good_streak == 0 else good_start
            good_streak += 1
            if good_streak >= recover:
                current.end = good_start
                runs.append(current)
                current, bad_streak = None, 0
        elif state is True:
            good_streak = 0
    if current is not None:
        runs.append(current)
    return runs


def _median_mad(values: Sequence[float]) -> tuple[float, float]:
    median = statistics.median(values)
    return median, statistics.median(abs(v - median) for v in values)


def _prefix(values: Sequence[float]) -> list[float]:
    sums = [0.0]
    for value in values:
        sums.append(sums[-1] + value)
    return sums


def _weekly_baseline(
    values: Sequence[float], index: int, step: int, cfg: DetectorSettings, born: int = 0
) -> list[float]:
    """Values at the same position `step` (a week in hours or days) back, up to baseline_weeks.

    Positions before `born` (before the series ever had data) are not history, just absence.
    """
    past = [
        values[index - k * step]
        for k in range(1, cfg.baseline_weeks + 1)
        if index - k * step >= born
    ]
    return past if len(past) >= cfg.min_baseline_weeks else []


def _first_data(values: Sequence[float]) -> int:
    """Index of the first non-zero value: the zeros before it predate the pipeline or channel."""
    return next((i for i, v in enumerate(values) if v), len(values))


def _refine_since(run: _Run, low: Sequence[bool], floor: int, lookback: int) -> int:
    """Move an incident's start back over the individually bad hours that tipped the window."""
    since = run.start
    if not low[since]:
        return since
    while since - 1 >= max(floor, run.start - lookback + 1) and low[since - 1]:
        since -= 1
    return since


def _refine_until(end: int, since: int, low: Sequence[bool]) -> int:
    """Move a recovery back to the first of the normal hours that let the window recover."""
    while end - 1 > since and not low[end - 1]:
        end -= 1
    return end


def detect_drops(
    values: Sequence[int],
    start: dt.datetime,
    subject: str,
    cfg: DetectorSettings = DEFAULT_SETTINGS,
    first: int = 0,
) -> list[Incident]:
    """Submissions of one channel falling well below the same hours of previous weeks.

    Compares the sum of the last `drop_window_hours` hours with the median of the same
    window 1..`baseline_weeks` weeks earlier; verdicts only for indices >= `first`.
    """
    n, window = len(values), cfg.drop_window_hours
    born = _first_data(values)
    sums = _prefix(values)
    window_sums = [
        sums[t + 1] - sums[t + 1 - window] if t + 1 >= window else None for t in range(n)
    ]
    hourly_expected: list[float | None] = []
    for t in range(n):
        past = _weekly_baseline(values, t, WEEK_HOURS, cfg, born)
        hourly_expected.append(statistics.median(past) if past else None)
    low = [
        e is not None and v < cfg.drop_ratio * e
        for v, e in zip(values, hourly_expected, strict=True)
    ]

    states: list[bool | None] = [None] * n
    for t in range(max(first, window - 1), n):
        past = [
            s
            for s in _weekly_baseline(window_sums, t, WEEK_HOURS, cfg, born + window - 1)
            if s is not None
        ]
        if len(past) < cfg.min_baseline_weeks:
            continue
        expected, mad = _median_mad(past)
        if expected < cfg.drop_min_expected:
            continue
        seen = window_sums[t]
        sigma = math.sqrt(expected + (MAD_TO_SIGMA * mad) ** 2)
        states[t] = seen < cfg.drop_ratio * expected and expected - seen > cfg.drop_z * sigma

    incidents = []
    floor = first
    for run in merge_runs(states, 1, cfg.drop_recover_hours):
        since = _refine_since(run, low, floor, window)
        until = None if run.end is None else _refine_until(run.end, since, low)
        floor = until if until is not None else n
        span = range(since, n if until is None else until)
        expected = sum(hourly_expected[h] or 0.0 for h in span)
        seen = sum(values[h] for h in span)
        weeks = len(_weekly_baseline(values, since, WEEK_HOURS, cfg, born))
        incidents.append(
            Incident(
                KIND_DROP,
                subject,
                start + since * HOUR,
                None if until is None else start + until * HOUR,
                start + (run.detected + 1) * HOUR,
                expected,
                seen,
                f"{subject}: {seen:,.0f} submissions in {len(span)} h against {expected:,.0f} expected "
                f"(median of the same hours in the previous {weeks} weeks)",
            )
        )
    return incidents


def _day_grid(start: dt.datetime, n: int) -> tuple[int, int]:
    """Index of the first midnight in the series and the number of complete days after it."""
    offset = (24 - start.hour) % 24
    return offset, max(0, (n - offset) // 24)


def detect_declines(
    values: Sequence[int],
    start: dt.datetime,
    subject: str,
    cfg: DetectorSettings = DEFAULT_SETTINGS,
    first: int = 0,
) -> list[Incident]:
    """Daily totals below the same weekday of previous weeks for `decline_days` days running.

    Only complete UTC days are judged, and only days starting at or after index `first`.
    """
    offset, days = _day_grid(start, len(values))
    totals = [sum(values[offset + d * 24 : offset + d * 24 + 24]) for d in range(days)]
    born_day = max(0, -(-(_first_data(values) - offset) // 24))  # first complete day with data
    expected_by_day: list[float | None] = [None] * days
    states: list[bool | None] = [None] * days
    for d in range(days):
        if offset + d * 24 < first:
            continue
        past = _weekly_baseline(totals, d, 7, cfg, born_day)
        if not past:
            continue
        expected, mad = _median_mad(past)
        expected_by_day[d] = expected
        if expected < cfg.decline_min_expected:
            continue
        sigma = math.sqrt(expected + (MAD_TO_SIGMA * mad) ** 2)
        seen = totals[d]
        states[d] = seen < cfg.decline_ratio * expected and expected - seen > cfg.decline_z * sigma

    first_day = start + offset * HOUR
    incidents = []
    for run in merge_runs(states, cfg.decline_days, cfg.decline_recover_days):
        span = range(run.start, days if run.end is None else run.end)
        expected = sum(expected_by_day[d] or 0.0 for d in span)
        seen = sum(totals[d] for d in span)
        share = 1 - seen / expected if expected else 0.0
        incidents.append(
            Incident(
                KIND_DECLINE,
                subject,
                first_day + run.start * DAY,
                None if run.end is None else first_day + run.end * DAY,
                first_day + (run.detected + 1) * DAY,
                expected,
                seen,
                f"{subject}: daily submissions {share:.0%} below the same weekdays of previous weeks "
                f"for {len(span)} days ({seen:,.0f} against {expected:,.0f} expected)",
            )
        )
    return incidents


def detect_rate_rises(
    counts: Sequence[int],
    totals: Sequence[int],
    start: dt.datetime,
    subject: str,
    cfg: DetectorSettings = DEFAULT_SETTINGS,
    first: int = 0,
) -> list[Incident]:
    """The share `counts / totals` (one error reason of all converted) rising above usual.

    The usual level is the median of the daily shares over the previous `rate_history_days`
    complete days; the observed level is the share over the last `rate_window_hours` hours.
    """
    n, window = len(counts), cfg.rate_window_hours
    offset, days = _day_grid(start, n)
    daily: list[float | None] = []
    for d in range(days):
        day_total = sum(totals[offset + d * 24 : offset + d * 24 + 24])
        day_count = sum(counts[offset + d * 24 : offset + d * 24 + 24])
        daily.append(day_count / day_total if day_total >= cfg.rate_min_total else None)

    def usual(t: int) -> tuple[float, float] | None:
        day = (t - offset) // 24  # the day holding hour t (may be -1 for a partial first day)
        past = [
            r for r in daily[max(0, day - cfg.rate_history_days) : max(0, day)] if r is not None
        ]
        return _median_mad(past) if len(past) >= cfg.rate_min_history_days else None

    count_sums, total_sums = _prefix(counts), _prefix(totals)
    baselines: list[float | None] = [None] * n
    high = [False] * n
    states: list[bool | None] = [None] * n
    for t in range(first, n):
        found = usual(t)
        if found is None:
            continue
        base, mad = found
        baselines[t] = base
        if totals[t]:
            rate = counts[t] / totals[t]
            high[t] = rate >= cfg.rate_ratio * base and rate - base >= cfg.rate_min_rise
        if t + 1 < window:
            continue
        seen = count_sums[t + 1] - count_sums[t + 1 - window]
        total = total_sums[t + 1] - total_sums[t + 1 - window]
        if total < cfg.rate_min_total:
            continue
        rate, expected = seen / total, base * total
        sigma = math.sqrt(expected + (MAD_TO_SIGMA * mad * total) ** 2)
        states[t] = (
            seen >= cfg.rate_min_count
            and rate >= cfg.rate_ratio * base
            and rate - base >= cfg.rate_min_rise
            and seen - expected > cfg.rate_z * sigma
        )

    incidents = []
    floor = first
    for run in merge_runs(states, 1, cfg.rate_recover_hours):
        since = _refine_since(run, high, floor, window)
        until = None if run.end is None else _refine_until(run.end, since, high)
        floor = until if until is not None else n
        span = range(since, n if until is None else until)
        total = sum(totals[h] for h in span)
        seen = sum(counts[h] for h in span) / total if total else 0.0
        expected = baselines[since] if baselines[since] is not None else baselines[run.start] or 0.0
        label = "invalid records" if subject == INVALID else f"{subject} errors"
        incidents.append(
            Incident(
                KIND_ERROR_RATE,
                subject,
                start + since * HOUR,
                None if until is None else start + until * HOUR,
                start + (run.detected + 1) * HOUR,
                expected,
                seen,
                f"{label}: {seen:.2%} of converted records over {len(span)} h, usually {expected:.2%} "
                f"(median daily share of the previous {cfg.rate_history_days} days)",
            )
        )
    return incidents


def suppress_covered(incidents: Sequence[Incident]) -> list[Incident]:
    """Drop incidents another one already explains, so one outage sends one alert.

    A decline of a channel overlapping a drop of the same channel is the drop seen at daily
    resolution; a rise of the aggregate invalid rate overlapping a rise of one reason is that
    reason's rise.
    """
    kept = []
    for incident in incidents:
        if incident.kind == KIND_DECLINE:
            cover = [o for o in incidents if o.kind == KIND_DROP and o.subject == incident.subject]
        elif incident.kind == KIND_ERROR_RATE and incident.subject == INVALID:
            cover = [o for o in incidents if o.kind == KIND_ERROR_RATE and o.subject != INVALID]
        else:
            cover = []
        if not any(incident.overlaps(other) for other in cover):
            kept.append(incident)
    return kept


def detect_all(
    frame: StatsFrame,
    cfg: DetectorSettings = DEFAULT_SETTINGS,
    evaluate_from: dt.datetime | None = None,
) -> list[Incident]:
    """Run every detector over `frame`; verdicts only from `evaluate_from` on (default: start).

    Every verdict depends only on data up to its own hour, so one pass over a long range
    gives the same incidents as evaluating it hour by hour.
    """
    first = 0 if evaluate_from is None else max(0, frame.index_of(evaluate_from))
    found: list[Incident] = []
    for channel, series in sorted(frame.submissions.items()):
        found += detect_drops(series, frame.start, channel, cfg, first)
        found += detect_declines(series, frame.start, channel, cfg, first)
    for reason, series in sorted(frame.reasons.items()):
        found += detect_rate_rises(series, frame.converted, frame.start, reason, cfg, first)
    if frame.reasons:
        found += detect_rate_rises(
            frame.invalid(), frame.converted, frame.start, INVALID, cfg, first
        )
    return sorted(suppress_covered(found), key=lambda i: (i.since, i.kind, i.subject))
