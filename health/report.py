"""Server-side SVG of pipeline health: submissions per channel and invalid-record rate.

The dashboard's /health page embeds the string `health_svg()` returns, so the chart needs no
JavaScript, no CDN and no plotting library. Two panels share one time axis: submissions per
hour by channel and the invalid-record rate with the error reasons that alerted (and records
parked until their Histograms.json can be fetched). Both use a symmetric log scale: linear
near zero, logarithmic above (release is ~50 times esr), so a zero is drawn as zero, not as
the lowest gridline. The current, still-filling hour is included, so new traffic shows at once. Alert intervals are shaded across both panels and labelled
(the detectors' alerts; dead-lettered batches are no series of the chart, the page lists them).
Every text taken from data (channel, reason) is XML-escaped: the page marks the SVG safe.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import Engine

from health.alerts import describe_kind, list_alerts
from health.anomaly import (
    DAY,
    HOUR,
    INVALID,
    KIND_ERROR_RATE,
    KINDS,
    PARKED,
    StatsFrame,
)
from pipeline.stats import hour_of, read_counts

WIDTH, HEIGHT = 1200, 800
LEFT, RIGHT = 78, 170  # room for the y labels and for the legend
TOP_PANEL = (96, 450)  # y of the top and bottom edge of each plot area
BOTTOM_PANEL = (530, 740)
CHANNEL_COLOURS = {"release": "#1f6fb4", "beta": "#e8710a", "nightly": "#8e44ad", "esr": "#2a9d4b"}
OTHER_COLOURS = ("#c0392b", "#16a085", "#7f8c8d", "#d35400", "#2c3e50", "#b7950b")
REASON_COLOURS = ("#d35400", "#8e44ad", "#16a085", "#2c3e50", "#b7950b", "#7f8c8d")
ALERT_COLOURS = {"drop": "#d62728", "decline": "#f0a202", "error_rate": "#9b59b6"}
# A presentation attribute, not a style attribute: the dashboard's CSP allows no inline styles.
FONT = "system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"


@dataclasses.dataclass(frozen=True)
class AlertMark:
    """What the chart needs of an alert (also lets tests draw without a database)."""

    kind: str
    subject: str
    start: dt.datetime
    end: dt.datetime | None


def health_svg(engine: Engine, days: int = 60, now: dt.datetime | None = None) -> str:
    """The health chart of the `days` days up to `now`, its current (partial) hour included
    (fewer days when the recorded data begins later, but two at least)."""
    end = hour_of(now or dt.datetime.now(dt.UTC)) + HOUR
    start = end - days * DAY
    rows = list(read_counts(engine, start))
    if rows:  # a new installation: from the day its data begins (two days at least), so the
        # first hours of traffic are not a sliver at the edge of 60 empty days
        first_day = min(row[0] for row in rows).replace(hour=0)
        start = max(start, min(first_day, end - 2 * DAY))
    frame = StatsFrame.from_rows(rows, start, end)
    marks = [
        AlertMark(a.kind, a.subject, a.started_at, a.ended_at)
        for a in list_alerts(engine, start)
        if a.started_at < end and a.kind in KINDS  # alerts about the plotted series only
    ]
    return render_svg(frame, marks)


def render_svg(frame: StatsFrame, alerts: Sequence[AlertMark]) -> str:
    """Draw `frame` with `alerts` marked; pure, so it is easy to look at and to test."""
    start, end = frame.start, frame.start + frame.hours * HOUR
    plot_right = WIDTH - RIGHT
    span = max(1.0, (end - start) / HOUR)

    def x_of(moment: dt.datetime) -> float:
        offset = min(max((moment - start) / HOUR, 0.0), span)
        return LEFT + (plot_right - LEFT) * offset / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" aria-labelledby="health-title" class="health-chart" font-family="{FONT}">',
        # The page's heading names the chart; the SVG only says what it covers and how to read it.
        f'<title id="health-title">Pipeline health from {start:%Y-%m-%d} to {end:%Y-%m-%d %H:%M} UTC</title>',
        f'<text x="{LEFT}" y="40" font-size="12" fill="#666">{start:%Y-%m-%d %H:%M} to '
        f"{end:%Y-%m-%d %H:%M} UTC (the last hour is still filling). Faint lines: hourly counts; "
        "bold: mean of the last 24 hours; shaded bands: alerts</text>",
    ]
    parts += _alert_bands(alerts, x_of, end)
    parts += _submissions_panel(frame, x_of)
    parts += _rate_panel(frame, alerts, x_of)
    parts += _time_axis(start, end, x_of)
    parts += _alert_labels(alerts, x_of, end)
    parts.append("</svg>")
    return "\n".join(parts)


def _symlog(value: float, unit: float) -> float:
    """Linear near zero, logarithmic above `unit`: zero stays zero (a log scale cannot show it)."""
    return math.log10(1 + max(value, 0.0) / unit)


def _symlog_ticks(high_exp: int, unit_exp: int) -> list[tuple[float, bool]]:
    """(value, major) gridlines: 0, then 1-2-5 steps per decade from 10**unit_exp to 10**high_exp."""
    ticks = [(0.0, True)]
    for exponent in range(unit_exp, high_exp + 1):
        for multiple in (1, 2, 5):
            if multiple > 1 and exponent == high_exp:
                continue
            ticks.append((multiple * 10.0**exponent, multiple == 1))
    return ticks


def _nice_step(span: float, target: int) -> float:
    raw = span / max(1, target)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _polyline(
    points: Sequence[tuple[float, float] | None], colour: str, width: float, extra: str = ""
) -> str:
    """A path through the points, broken where a point is None (no data)."""
    commands, pen_down = [], False
    for point in points:
        if point is None:
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{point[0]:.1f},{point[1]:.1f}")
        pen_down = True
    if not commands:
        return ""
    return (
        f'<path d="{" ".join(commands)}" fill="none" stroke="{colour}" stroke-width="{width}" '
        f'stroke-linejoin="round" {extra}/>'
    )


def _frame_box(top: int, bottom: int, title: str, y_label: str) -> list[str]:
    middle = (top + bottom) / 2
    return [
        f'<rect x="{LEFT}" y="{top}" width="{WIDTH - RIGHT - LEFT}" height="{bottom - top}" '
        'fill="none" stroke="#bbb"/>',
        f'<text x="{LEFT}" y="{top - 10}" font-size="14" font-weight="600" fill="#333">{escape(title)}</text>',
        f'<text transform="translate(18 {middle}) rotate(-90)" text-anchor="middle" font-size="12" '
        f'fill="#555">{escape(y_label)}</text>',
    ]


def _no_data(top: int, bottom: int, message: str) -> str:
    return (
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{(top + bottom) / 2}" text-anchor="middle" '
        f'font-size="14" fill="#888">{escape(message)}</text>'
    )


def _colour_for(channel: str, index: int) -> str:
    return CHANNEL_COLOURS.get(channel, OTHER_COLOURS[index % len(OTHER_COLOURS)])


def _submissions_panel(frame: StatsFrame, x_of) -> list[str]:
    top, bottom = TOP_PANEL
    parts = _frame_box(
        top, bottom, "Submissions per hour by channel", "submissions / hour (0, then log scale)"
    )
    channels = sorted(frame.submissions, key=lambda c: -sum(frame.submissions[c]))
    positive = [v for c in channels for v in frame.submissions[c] if v > 0]
    if not positive:
        parts.append(_no_data(top, bottom, "No submissions recorded in this period"))
        return parts
    high_exp = max(1, math.ceil(math.log10(max(positive))))
    high_level = _symlog(10**high_exp, 1)

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * _symlog(value, 1) / high_level

    for value, major in _symlog_ticks(high_exp, 0):
        y = y_of(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{"#ddd" if major else "#f0f0f0"}"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{"#444" if major else "#999"}">{_short_number(value)}</text>'
        )
    for index, channel in enumerate(channels):
        series = frame.submissions[channel]
        colour = _colour_for(channel, index)
        hourly = [(x_of(frame.hour_at(h) + HOUR / 2), y_of(v)) for h, v in enumerate(series)]
        daily = [
            (x_of(frame.hour_at(h) + HOUR / 2), y_of(v))
            for h, v in enumerate(_rolling_mean(series, 24))
        ]
        parts.append(_polyline(hourly, colour, 0.8, 'stroke-opacity="0.35"'))
        parts.append(
            _polyline(daily, colour, 2.2, f'class="channel" data-channel={quoteattr(channel)}')
        )
    parts += _legend(
        [
            (channel, _colour_for(channel, i), f"{sum(frame.submissions[channel]):,} in total")
            for i, channel in enumerate(channels)
        ],
        top,
        "channel",
    )
    return parts


def _rolling_mean(values: Sequence[int], width: int) -> list[float]:
    """Mean of the `width` hours up to each hour (fewer at the start), to show trends through
    the daily cycle. Trailing, not centred: a centred mean would rise hours before the first
    submission arrived."""
    sums = [0]
    for value in values:
        sums.append(sums[-1] + value)
    out = []
    for index in range(len(values)):
        low = max(0, index + 1 - width)
        out.append((sums[index + 1] - sums[low]) / (index + 1 - low))
    return out


def _short_number(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


def _legend(entries: Sequence[tuple[str, str, str]], top: int, heading: str) -> list[str]:
    x = WIDTH - RIGHT + 16
    parts = [f'<text x="{x}" y="{top + 12}" font-size="11" fill="#666">{escape(heading)}</text>']
    for row, (name, colour, note) in enumerate(entries):
        y = top + 32 + row * 34
        parts.append(
            f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="3"/>'
        )
        parts.append(
            f'<text x="{x + 24}" y="{y}" font-size="13" fill="#222" class="legend">{escape(name)}</text>'
        )
        if note:
            parts.append(
                f'<text x="{x + 24}" y="{y + 14}" font-size="10" fill="#888">{escape(note)}</text>'
            )
    return parts


def _rates(counts: Sequence[int], totals: Sequence[int], window: int = 6) -> list[float | None]:
    """Share counts/totals over a trailing `window` hours (None where nothing was converted)."""
    count_sum = total_sum = 0
    out: list[float | None] = []
    for index, (count, total) in enumerate(zip(counts, totals, strict=True)):
        count_sum += count
        total_sum += total
        if index >= window:
            count_sum -= counts[index - window]
            total_sum -= totals[index - window]
        out.append(count_sum / total_sum if total_sum else None)
    return out


def _rate_panel(frame: StatsFrame, alerts: Sequence[AlertMark], x_of) -> list[str]:
    top, bottom = BOTTOM_PANEL
    parts = _frame_box(
        top,
        bottom,
        "Invalid records and alerting error reasons, share of converted (6 h window)",
        "% of converted (0, then log)",
    )
    parked = frame.parked or [0] * frame.hours
    if not any(frame.converted) and not any(parked):
        parts.append(_no_data(top, bottom, "No converted records in this period"))
        return parts
    lines = [("all invalid", "#c0392b", _rates(frame.invalid(), frame.converted), 1.6)]
    if any(parked):  # share of the records that reached convert, put aside for later
        reached = [c + p for c, p in zip(frame.converted, parked, strict=True)]
        lines.append(
            (f"{PARKED} (waiting for Histograms.json)", "#7f8c8d", _rates(parked, reached), 1.2)
        )
    alerted = sorted(
        {a.subject for a in alerts if a.kind == KIND_ERROR_RATE and a.subject in frame.reasons}
    )
    for index, reason in enumerate(r for r in alerted if r != INVALID):
        colour = REASON_COLOURS[index % len(REASON_COLOURS)]
        lines.append((reason, colour, _rates(frame.reasons[reason], frame.converted), 1.2))
    positive = [v for _, _, series, _ in lines for v in series if v]
    if not positive:
        positive = [0.001]
    low_exp = min(-3, math.floor(math.log10(min(positive))))  # linear below 10**low_exp
    high_exp = max(low_exp + 1, min(0, math.ceil(math.log10(max(positive)))))
    unit = 10.0**low_exp
    high_level = _symlog(10.0**high_exp, unit)

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * _symlog(value, unit) / high_level

    for value, major in _symlog_ticks(high_exp, low_exp):
        y = y_of(value)
        percent = value * 100
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{"#ddd" if major else "#f0f0f0"}"/>'
        )
        if major or high_exp - low_exp <= 3:
            parts.append(
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                f'fill="{"#444" if major else "#999"}">{percent:g}%</text>'
            )
    for _name, colour, series, width in lines:
        points = [
            None if v is None else (x_of(frame.hour_at(h) + HOUR / 2), y_of(v))
            for h, v in enumerate(series)
        ]
        parts.append(_polyline(points, colour, width, 'class="rate"'))
    parts += _legend([(name, colour, "") for name, colour, _, _ in lines], top, "records")
    return parts


def _time_axis(start: dt.datetime, end: dt.datetime, x_of) -> list[str]:
    """Daily ticks; a labelled grid line every Monday (every day for two weeks or less)."""
    parts = []
    every_day = end - start <= 14 * DAY
    day = (start + DAY).replace(hour=0) if start.hour else start
    while day <= end:
        x = x_of(day)
        labelled = every_day or day.weekday() == 0
        for top, bottom in (TOP_PANEL, BOTTOM_PANEL):
            if labelled:
                parts.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="#e4e4e4"/>'
                )
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + (6 if labelled else 3)}" stroke="#999"/>'
            )
            if labelled:
                parts.append(
                    f'<text x="{x:.1f}" y="{bottom + 19}" text-anchor="middle" font-size="11" fill="#444">'
                    f"{day:%b} {day.day}</text>"
                )
        day += DAY
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{BOTTOM_PANEL[1] + 40}" text-anchor="middle" '
        f'font-size="12" fill="#555">date (UTC{"" if every_day else "; labelled lines are Mondays"})</text>'
    )
    return parts


def _alert_bands(alerts: Sequence[AlertMark], x_of, end: dt.datetime) -> list[str]:
    parts = []
    for alert in alerts:
        panel = BOTTOM_PANEL if alert.kind == KIND_ERROR_RATE else TOP_PANEL
        colour = ALERT_COLOURS.get(alert.kind, "#d62728")
        x1, x2 = x_of(alert.start), x_of(alert.end or end)
        width = max(x2 - x1, 2.0)
        parts.append(
            f'<rect class="alert" data-kind={quoteattr(alert.kind)} data-subject={quoteattr(alert.subject)} '
            f'x="{x1:.1f}" y="{panel[0]}" width="{width:.1f}" height="{panel[1] - panel[0]}" '
            f'fill="{colour}" fill-opacity="0.13" stroke="{colour}" stroke-opacity="0.5" stroke-dasharray="3 2">'
            f"<title>{escape(_label(alert, end))}</title></rect>"
        )
    return parts


def _label(alert: AlertMark, end: dt.datetime) -> str:
    until = (
        "ongoing" if alert.end is None else f"to {alert.end:%b} {alert.end.day} {alert.end:%H:%M}"
    )
    return f"{describe_kind(alert.kind, alert.subject)}: {alert.start:%b} {alert.start.day} {alert.start:%H:%M} {until}"


def _alert_labels(alerts: Sequence[AlertMark], x_of, end: dt.datetime) -> list[str]:
    """Labels above the bands; alternate rows when neighbours would overlap."""
    parts = []
    last_right: dict[
        tuple[int, int], float
    ] = {}  # (panel top, row) -> right edge of its last label
    for alert in sorted(alerts, key=lambda a: a.start):
        panel = BOTTOM_PANEL if alert.kind == KIND_ERROR_RATE else TOP_PANEL
        colour = ALERT_COLOURS.get(alert.kind, "#d62728")
        text = f"{describe_kind(alert.kind, alert.subject)} {alert.start:%b} {alert.start.day}" + (
            " (ongoing)" if alert.end is None else ""
        )
        x = x_of(alert.start) + 3
        width = 6.6 * len(text) + 22
        if x + width > WIDTH - RIGHT:
            x = WIDTH - RIGHT - width
        row = next((r for r in (0, 1, 2) if x > last_right.get((panel[0], r), -1e9) + 6), 0)
        last_right[(panel[0], row)] = x + width
        y = panel[0] + 6 + row * 20
        parts.append(
            f'<g class="alert-label"><rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="17" rx="3" '
            f'fill="#fff" fill-opacity="0.92" stroke="{colour}"/>'
            f'<text x="{x + 7:.1f}" y="{y + 12.5}" font-size="11" fill="#222">&#9888; {escape(text)}</text></g>'
        )
    return parts
