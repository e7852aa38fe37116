"""The health chart: valid SVG with every channel, the rate panel and the alert marks."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from health import simulate
from health.alerts import record_incidents
from health.anomaly import DAY, HOUR, Incident, StatsFrame
from health.report import AlertMark, health_svg, render_svg
from pipeline.db import init_db, make_engine
from pipeline.stats import add_counts, read_counts

SVG = "{http://www.w3.org/2000/svg}"
END = dt.datetime(2026, 11, 23, 18)


def _texts(root: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]


def _alert_rects(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "alert"]


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    init_db(engine)
    yield engine
    engine.dispose()


def test_sixty_simulated_days_draw_every_channel_and_every_alert():
    simulation = simulate.generate(days=60, seed=1, scenario="outages", end=END)
    found = simulate.detect(simulation)
    marks = [AlertMark(i.kind, i.subject, i.since, i.until) for i in found]
    root = ET.fromstring(render_svg(simulation.frame(), marks))

    texts = _texts(root)
    for channel in ("release", "beta", "nightly", "esr"):
        assert channel in texts  # legend entry
    drawn = {p.get("data-channel") for p in root.iter(f"{SVG}path") if p.get("class") == "channel"}
    assert drawn == {"release", "beta", "nightly", "esr"}
    assert any(p.get("class") == "rate" for p in root.iter(f"{SVG}path"))
    assert {(r.get("data-kind"), r.get("data-subject")) for r in _alert_rects(root)} == {
        (i.kind, i.subject) for i in found
    }
    labels = [t for t in texts if t.startswith("\u26a0")]
    assert any("beta submissions dropped" in t for t in labels)
    assert any("release submissions declining" in t for t in labels)
    assert any("invalid_histogram error rate up" in t for t in labels)
    assert any("Oct 5" in t or "Nov 2" in t for t in texts)  # dated time axis


def test_health_svg_reads_stats_and_stored_alerts(engine):
    start = END - 3 * DAY
    for hour, source, counts in simulate.generate(days=3, seed=4, scenario="clean", end=END).counts:
        add_counts(engine, source, hour, counts)
    since = start + DAY + 5 * HOUR
    record_incidents(
        engine,
        [Incident("drop", "nightly", since, None, since + HOUR, 500.0, 0.0, "nightly stopped")],
        END,
    )

    root = ET.fromstring(health_svg(engine, days=3, now=END + 20 * dt.timedelta(minutes=1)))
    [rect] = _alert_rects(root)
    assert (rect.get("data-kind"), rect.get("data-subject")) == ("drop", "nightly")
    assert float(rect.get("width")) > 100  # ongoing: shaded up to now
    assert any("nightly submissions dropped" in t and "(ongoing)" in t for t in _texts(root))
    assert {"release", "beta", "nightly", "esr"} <= set(_texts(root))


def test_empty_database_gives_a_valid_chart_that_says_so(engine):
    root = ET.fromstring(health_svg(engine, days=60, now=END))
    texts = _texts(root)
    assert "No submissions recorded in this period" in texts
    assert "No converted records in this period" in texts
    assert _alert_rects(root) == []


def test_names_from_data_are_escaped():
    start = END - 2 * DAY
    hostile = '<script>alert("x")</script>'
    frame = StatsFrame(start, 48, {hostile: [5] * 48}, [5] * 48, {hostile: [1] * 48})
    svg = render_svg(frame, [AlertMark("error_rate", hostile, start + DAY, None)])
    root = ET.fromstring(svg)
    assert "<script>" not in svg
    assert hostile in _texts(root)
    assert [r.get("data-subject") for r in _alert_rects(root)] == [hostile]


def _path_points(path: ET.Element) -> list[tuple[float, float]]:
    return [
        (float(x), float(y))
        for x, y in (p[1:].split(",") for p in path.get("d").split() if p[0] in "ML")
    ]


def test_the_current_hour_is_counted(engine):
    """A fresh install: 4 records converted this hour must show, not "No submissions"."""
    now = END + 20 * dt.timedelta(minutes=1)
    add_counts(engine, "ingest", now, {("accepted", "esr", "main"): 4})
    add_counts(engine, "convert", now, {("published", "esr", "main"): 4})
    root = ET.fromstring(health_svg(engine, days=60, now=now))
    texts = _texts(root)
    assert not any("No submissions" in t or "No converted" in t for t in texts)
    assert "esr" in texts and "4 in total" in texts


def test_zero_is_drawn_at_zero_not_at_the_lowest_gridline():
    start = END - 2 * DAY
    series = [0] * 47 + [1]  # the old log scale drew these zeros as 1
    frame = StatsFrame(start, 48, {"esr": series}, [1] * 48, {})
    root = ET.fromstring(render_svg(frame, []))
    hourly = next(
        p for p in root.iter(f"{SVG}path") if p.get("stroke-opacity") == "0.35"
    )  # the faint hourly line
    points = _path_points(hourly)
    bottom = 450.0  # TOP_PANEL's lower edge
    assert points[0][1] == bottom  # zero sits on the axis
    assert points[-1][1] < bottom - 20  # one is visibly above it
    assert "0" in _texts(root)  # the axis is labelled from zero


def test_the_title_is_left_to_the_page():
    root = ET.fromstring(render_svg(StatsFrame(END - DAY, 24, {}, [0] * 24, {}), []))
    assert not any(t.startswith("Pipeline health") for t in _texts(root))  # was a second title


def test_parked_records_are_drawn_apart_and_are_not_invalid(engine):
    now = END + 10 * dt.timedelta(minutes=1)
    add_counts(engine, "convert", now - HOUR, {("published", "esr", "main"): 90})
    add_counts(engine, "convert", now - HOUR, {("parked", "esr", "main"): 10})
    frame = StatsFrame.from_rows(read_counts(engine, END - DAY), END - DAY, END + HOUR)
    assert sum(frame.parked) == 10 and sum(frame.converted) == 90
    assert not any(frame.invalid()) and "parked" not in frame.reasons
    texts = _texts(ET.fromstring(health_svg(engine, days=1, now=now)))
    assert any(t.startswith("parked") for t in texts)  # legend of the rate panel


def test_a_new_installation_is_not_a_sliver_of_sixty_empty_days(engine):
    add_counts(engine, "ingest", END, {("accepted", "esr", "main"): 4})
    texts = _texts(ET.fromstring(health_svg(engine, days=60, now=END)))
    assert not any(t.startswith(("Sep", "Oct")) for t in texts)  # no 60-day axis
    assert any(t.startswith("2026-11-21 19:00 to 2026-11-23 19:00 UTC") for t in texts)


def test_the_daily_mean_does_not_start_before_the_data():
    start = END - 2 * DAY
    series = [0] * 40 + [24] * 8
    frame = StatsFrame(start, 48, {"esr": series}, [0] * 48, {})
    root = ET.fromstring(render_svg(frame, []))
    [mean] = [p for p in root.iter(f"{SVG}path") if p.get("class") == "channel"]
    points = _path_points(mean)
    assert all(y == 450.0 for _x, y in points[:40])  # zero until the first submission
    assert points[40][1] < 450.0


def test_the_chart_has_no_style_attributes_for_the_dashboard_csp():
    simulation = simulate.generate(days=3, seed=1, scenario="clean", end=END)
    root = ET.fromstring(render_svg(simulation.frame(), []))
    assert [el.tag for el in root.iter() if el.get("style")] == []
