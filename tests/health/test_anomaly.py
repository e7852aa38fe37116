"""Anomaly detectors on simulated traffic: every injected outage caught, clean traffic silent.

Detection bounds (from the injected start to `detected_at`, the end of the confirming hour
or day): drops and error-rate rises within 6 hours, gradual declines within 7 days (a
decline is by definition slow: it must stay below 90% of the same weekdays for 3 days).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from health import simulate
from health.anomaly import (
    DAY,
    HOUR,
    INVALID,
    KIND_DECLINE,
    KIND_DROP,
    KIND_ERROR_RATE,
    DetectorSettings,
    Incident,
    StatsFrame,
    detect_all,
    detect_declines,
    detect_drops,
    detect_rate_rises,
    merge_runs,
    suppress_covered,
)

END = dt.datetime(2026, 11, 23, 18)
BOUNDS = {KIND_DROP: 6 * HOUR, KIND_ERROR_RATE: 6 * HOUR, KIND_DECLINE: 7 * DAY}
START = dt.datetime(2026, 1, 5)  # a Monday


def _flat_weeks(weeks: int, per_hour: int = 100) -> list[int]:
    return [per_hour] * (weeks * 7 * 24)


def _truncated(frame: StatsFrame, hours: int) -> StatsFrame:
    return StatsFrame(
        frame.start,
        hours,
        {c: s[:hours] for c, s in frame.submissions.items()},
        frame.converted[:hours],
        {r: s[:hours] for r, s in frame.reasons.items()},
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_every_injected_outage_is_alerted_within_its_bound(seed):
    simulation = simulate.generate(days=60, seed=seed, scenario="outages", end=END)
    assert len(simulation.truth) == 4
    found = simulate.detect(simulation)

    for truth in simulation.truth:
        matching = [
            i
            for i in found
            if i.kind == truth.kind
            and i.subject == truth.subject
            and i.since < truth.end
            and (i.until is None or i.until > truth.start)
        ]
        assert len(matching) == 1, f"{truth.description}: {matching}"
        incident = matching[0]
        bound = BOUNDS[truth.kind]
        assert incident.detected_at - truth.start <= bound, (truth, incident)
        assert incident.since >= truth.start - 2 * HOUR, (truth, incident)
        assert incident.until is not None and abs(incident.until - truth.end) <= bound, (
            truth,
            incident,
        )
    # nothing else: one alert per outage (a stopped channel is not also a "decline", a
    # rejected share is not also an "invalid" aggregate alert)
    assert len(found) == len(simulation.truth), found


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sixty_clean_days_raise_no_alert(seed):
    simulation = simulate.generate(days=60, seed=seed, scenario="clean", end=END)
    frame = simulation.frame()
    assert set(frame.submissions) == {"release", "beta", "nightly", "esr"}
    assert sum(frame.converted) > 1_000_000  # the detectors had real volume to judge
    found = simulate.detect(simulation)
    assert len(found) == 0, [i.details for i in found]


def test_one_pass_equals_hour_by_hour_evaluation():
    frame = simulate.generate(days=60, seed=7, scenario="outages", end=END).frame()
    final = detect_all(frame)
    cuts = [frame.index_of(t.start) + k for t in simulate.outage_plan(frame.start) for k in (5,)]
    for cut in cuts + [frame.hours - 1]:
        partial = detect_all(_truncated(frame, cut))
        cut_time = frame.start + cut * HOUR
        expected = [
            (i.kind, i.subject, i.since, i.until if i.until and i.until <= cut_time else None)
            for i in final
            if i.detected_at <= cut_time
        ]
        assert [(i.kind, i.subject, i.since, i.until) for i in partial] == expected, cut_time


def test_stopped_channel_reported_as_ongoing_until_it_recovers():
    values = _flat_weeks(3) + [0] * 10
    found = detect_drops(values, START, "beta")
    assert len(found) == 1
    incident = found[0]
    assert incident.ongoing and incident.since == START + 3 * 7 * DAY
    assert incident.seen == 0 and incident.expected == pytest.approx(1000)

    recovered = detect_drops(values + [100] * 5, START, "beta")
    assert recovered[0].until == START + 3 * 7 * DAY + 10 * HOUR


def test_new_pipeline_without_two_weeks_of_history_is_not_judged():
    values = _flat_weeks(1) + [0] * 48
    assert detect_drops(values, START, "beta") == []
    assert detect_declines(values, START, "beta") == []


def test_low_volume_channel_is_not_judged():
    values = _flat_weeks(3, per_hour=3) + [0] * 24  # 12 expected per window: below the minimum
    assert detect_drops(values, START, "tiny") == []


def test_half_volume_for_a_few_hours_is_not_a_drop_but_a_stop_is():
    half = _flat_weeks(3) + [60] * 6
    assert detect_drops(half, START, "beta") == []
    assert len(detect_drops(_flat_weeks(3) + [5] * 6, START, "beta")) == 1


def test_decline_needs_several_consecutive_low_days():
    weeks = _flat_weeks(3, per_hour=100)
    two_bad_days = weeks + [80] * 48 + [100] * 72
    assert detect_declines(two_bad_days, START, "release") == []
    three_bad_days = weeks + [80] * 72 + [100] * 72
    [incident] = detect_declines(three_bad_days, START, "release")
    assert incident.kind == KIND_DECLINE
    assert incident.since == START + 21 * DAY and incident.until == START + 24 * DAY
    assert incident.detected_at == START + 24 * DAY
    assert incident.seen == 3 * 24 * 80 and incident.expected == 3 * 24 * 100


def test_rate_rise_needs_enough_errors():
    totals = [1000] * (10 * 24)
    usual = [5] * (8 * 24)
    few = (
        usual + [5] * 24 + [9] * 3 + [5] * 21
    )  # 9/1000 for 3 h: 12 extra errors, under the minimum
    assert detect_rate_rises(few, totals, START, "bad_json") == []
    jump = usual + [5] * 24 + [60] * 6 + [5] * 18
    [incident] = detect_rate_rises(jump, totals, START, "bad_json")
    assert incident.since == START + 9 * DAY and incident.until == START + 9 * DAY + 6 * HOUR
    assert incident.expected == pytest.approx(0.005) and incident.seen == pytest.approx(0.06)


def test_merge_runs_confirms_recovers_and_ignores_unknown_steps():
    T, F, N = True, False, None
    runs = merge_runs([F, T, N, T, F, N, F, F, T], confirm=1, recover=2)
    assert [(r.start, r.detected, r.end) for r in runs] == [(1, 1, 4), (8, 8, None)]
    runs = merge_runs([T, F, T, T, T, F], confirm=3, recover=1)
    assert [(r.start, r.detected, r.end) for r in runs] == [(2, 4, 5)]


def _incident(kind, subject, since_hours, until_hours):
    until = None if until_hours is None else START + until_hours * HOUR
    return Incident(kind, subject, START + since_hours * HOUR, until, START, 0.0, 0.0, "")


def test_covered_incidents_are_suppressed_but_unrelated_ones_kept():
    drop = _incident(KIND_DROP, "beta", 10, 100)
    decline_same = _incident(KIND_DECLINE, "beta", 0, 200)
    decline_other = _incident(KIND_DECLINE, "release", 0, 200)
    reason = _incident(KIND_ERROR_RATE, "missing_revision", 50, None)
    aggregate = _incident(KIND_ERROR_RATE, INVALID, 60, 70)
    later_aggregate = _incident(KIND_ERROR_RATE, INVALID, 20, 30)
    kept = suppress_covered([drop, decline_same, decline_other, reason, aggregate, later_aggregate])
    assert kept == [drop, decline_other, reason, later_aggregate]


def test_from_rows_builds_series_per_channel_and_reason():
    rows = [
        (START, "ingest", "accepted", "beta", "saved-session", 7),
        (START, "ingest", "accepted", "beta", "idle-daily", 3),
        (START + HOUR, "convert", "published", "beta", "saved-session", 9),
        (START + HOUR, "convert", "duplicate", "beta", "saved-session", 1),
        (START + HOUR, "convert", "bad_json", "esr", "saved-session", 2),
        (START + 5 * HOUR, "ingest", "accepted", "beta", "saved-session", 99),  # outside
    ]
    frame = StatsFrame.from_rows(rows, START, START + 3 * HOUR)
    assert frame.submissions == {"beta": [10, 0, 0]}
    assert frame.converted == [0, 12, 0]
    assert frame.reasons == {"duplicate": [0, 1, 0], "bad_json": [0, 2, 0]}
    assert frame.invalid() == [0, 2, 0]  # duplicates are not invalid


def test_stricter_settings_change_the_verdict():
    values = _flat_weeks(3) + [60] * 6
    strict = dataclasses.replace(DetectorSettings(), drop_ratio=0.7)
    assert len(detect_drops(values, START, "beta", strict)) == 1


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="unknown scenario"):
        simulate.generate(days=5, scenario="chaos")
