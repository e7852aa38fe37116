"""Published results: a browsable listing of `<job_name>/data/` in the public store, no sign-in.

Works on any store URL (a directory or S3); files stream through the app so the embedded
default needs no separate web server.
"""

from __future__ import annotations

import mimetypes
import re

from flask import (
    Blueprint,
    Response,
    abort,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from dashboard import database, runlogs
from pipeline.errors import ObjectNotFound, StoreError
from scheduler.models import JOB_NAME_PATTERN

bp = Blueprint("public", __name__, url_prefix="/public")
# Shown inline as these types: Flask adds "; charset=utf-8" to text/plain itself (once); CSV
# stays text/plain because browsers download text/csv instead of showing it.
TEXT_TYPES = {
    ".txt": "text/plain",
    ".log": "text/plain",
    ".csv": "text/plain",
    ".tsv": "text/plain",
    ".json": "application/json",
    ".md": "text/plain",
}
SAFE_INLINE = {"image/png", "image/jpeg", "image/gif"}


def _clean(subpath: str) -> str:
    parts = [p for p in subpath.split("/") if p]
    if any(p in (".", "..") for p in parts):
        abort(404)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in subpath):
        abort(404)  # NUL and other control characters name no published file (and break open())
    return "/".join(parts)


@bp.route("/")
def index():
    store = runlogs.public_store(database.settings())
    # Only jobs with published data: a job whose runs failed has logs/ but no data/ listing.
    jobs = [
        name
        for name in (prefix.rstrip("/") for prefix in store.list_prefixes(""))
        if runlogs.has_published_data(store, name)
    ]
    return render_template("public/index.html", jobs=jobs)


@bp.route("/<job_name>/data/", defaults={"subpath": ""})
@bp.route("/<job_name>/data/<path:subpath>")
def browse(job_name: str, subpath: str):
    if not re.match(JOB_NAME_PATTERN, job_name):
        abort(404)
    relative = _clean(subpath)
    store = runlogs.public_store(database.settings())
    base = f"{job_name}/data/"
    key = base + relative
    if relative and not subpath.endswith("/"):
        try:
            stream = store.open(key)
        except (ObjectNotFound, StoreError):
            stream = None
        if stream is not None:
            return _send(stream, relative)
    prefix = key if not relative else key.rstrip("/") + "/"
    directories = [p[len(prefix) :].rstrip("/") for p in store.list_prefixes(prefix)]
    files = [
        (info.key[len(prefix) :], info.size)
        for info in store.list(prefix)
        if "/" not in info.key[len(prefix) :]
    ]
    if not directories and not files:
        abort(404)
    if relative and not subpath.endswith("/"):
        return _redirect_dir(job_name, relative)
    return render_template(
        "public/listing.html",
        job_name=job_name,
        relative=relative,
        directories=directories,
        files=files,
    )


def _redirect_dir(job_name: str, relative: str):
    return redirect(url_for("public.browse", job_name=job_name, subpath=relative + "/"))


def _send(stream, relative: str) -> Response:
    name = relative.rsplit("/", 1)[-1]
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    mimetype = TEXT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    disposition = "attachment" if request.args.get("download") else "inline"
    if suffix not in TEXT_TYPES and mimetype not in SAFE_INLINE:
        disposition = "attachment"  # published files are user content: never render HTML/SVG here

    def chunks():
        with stream:
            while chunk := stream.read(256 * 1024):
                yield chunk

    response = Response(stream_with_context(chunks()), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'{disposition}; filename="{name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
