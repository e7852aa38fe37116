"""The data dashboards, readable without signing in: distribution and evolution views of the
aggregates (telemetry.mozilla.org's dist.html and evo.html) and the JSON API behind them.

    GET /telemetry/dist                  distribution page
    GET /telemetry/evo                   evolution page
    GET /telemetry/api/v1/filters        channels, versions, dimension values, metrics
    GET /telemetry/api/v1/histogram      ?metric=&channel=&version=[&<dimension>=..][&dates=..]
    GET /telemetry/api/v1/evolution      ?metric=&channel=[&version=][&by=build_id|submission_date]

Lists are comma separated; `version` and `dates` also take an inclusive range `A..B`. The
aggregates come from the system job's published files through `aggregates.readcache`.
"""

from __future__ import annotations

import os

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from aggregates.readcache import FILTER_DIMENSIONS, AggregateCache, QueryError
from dashboard import database, runlogs
from pipeline.system_jobs import AGGREGATES_JOB, date_range

bp = Blueprint("telemetry", __name__, url_prefix="/telemetry")
MAX_LIST = 500


def cache() -> AggregateCache:
    """One read cache per app, in the data directory (rebuilt from the store when deleted)."""
    found = current_app.extensions.get("telemetry_aggregates")
    if found is None:
        settings = database.settings()
        found = AggregateCache(
            runlogs.public_store(settings),
            os.path.join(settings.data_dir, "aggregates-cache.db"),
            current_app.config.get("AGGREGATES_JOB") or AGGREGATES_JOB,
            min_sync_seconds=float(current_app.config["AGGREGATES_SYNC_SECONDS"]),
        )
        current_app.extensions["telemetry_aggregates"] = found
    return found


def _list(name: str, required: bool = False) -> list[str] | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        if required:
            raise QueryError(f"{name} is required")
        return None
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if len(values) > MAX_LIST:
        raise QueryError(f"{name}: at most {MAX_LIST} values")
    return values


def _one(name: str) -> str:
    """A single required value, taken whole (keyed metric names may contain commas)."""
    value = request.args.get(name, "").strip()
    if not value:
        raise QueryError(f"{name} is required")
    return value


def _versions(channel: str, required: bool) -> list[str] | None:
    raw = request.args.get("version", "").strip()
    if ".." in raw:
        low, _, high = raw.partition("..")
        return cache().versions_between(channel, low or None, high or None)
    return _list("version", required)


def _dates() -> list[str] | None:
    raw = request.args.get("dates", "").strip()
    try:
        if ".." in raw:
            first, _, last = raw.partition("..")
            dates = date_range(first, last)
            if len(dates) > 3660:
                raise QueryError("dates: at most ten years")
            return dates
        values = _list("dates")
        return [date_range(v, v)[0] for v in values] if values else None
    except QueryError:
        raise
    except ValueError as exc:
        raise QueryError(f"dates: {exc}") from exc


def _where() -> dict[str, list[str]]:
    return {d: values for d in FILTER_DIMENSIONS if (values := _list(d))}


def _json(payload, status: int = 200) -> Response:
    response = jsonify(payload)
    response.status_code = status
    response.headers["Access-Control-Allow-Origin"] = "*"  # a public API, like Telemetry.js's
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@bp.errorhandler(QueryError)
def _bad_query(exc: QueryError) -> Response:
    return _json({"error": str(exc)}, 400)


@bp.route("/")
def index():
    return redirect(url_for("telemetry.dist"))


@bp.route("/dist")
def dist():
    return render_template("telemetry/dist.html")


@bp.route("/evo")
def evo():
    return render_template("telemetry/evo.html")


@bp.route("/api/v1/filters")
def api_filters():
    return _json(cache().filters())


@bp.route("/api/v1/histogram")
def api_histogram():
    metric, channel = _one("metric"), _one("channel")
    versions = _versions(channel, True)
    found = cache().histogram(metric, channel, versions, _where(), _dates())
    if found is None:
        return _json({"error": f"no aggregates of {metric} for this selection"}, 404)
    found["description"] = cache().description(metric)
    return _json(found)


@bp.route("/api/v1/evolution")
def api_evolution():
    metric, channel = _one("metric"), _one("channel")
    by = request.args.get("by", "build_id")
    found = cache().evolution(metric, channel, _versions(channel, False), by, _where(), _dates())
    if found is None:
        return _json({"error": f"no aggregates of {metric} for this selection"}, 404)
    found["description"] = cache().description(metric)
    return _json(found)
