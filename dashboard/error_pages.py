"""Error pages in the dashboard's own layout instead of Werkzeug's bare ones (and /favicon.ico,
the one address every browser asks for that would otherwise be a 404).

Pages get `errors.html` (with the navigation, so a newcomer who followed a dead link can move
on); anything under /api/ gets the API's JSON error shape even when no API route matched.
"""

from __future__ import annotations

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

HINTS = {
    404: "There is nothing at this address. It may have been deleted, or it belongs to "
    "another user.",
    405: "This address does not accept that kind of request.",
    413: "The upload is larger than the dashboard accepts.",
    500: "Something went wrong on the server; the dashboard's log says what.",
}


def error_page(exc: HTTPException):
    code = exc.code or 500
    if request.path.startswith("/api/"):
        response = jsonify(error=exc.name.lower().replace(" ", "_"), message=exc.description)
        response.status_code = code
        return response
    hint = HINTS.get(code, exc.description)
    response = exc.get_response()  # keeps headers such as Allow on a 405
    body = render_template("errors.html", code=code, title=exc.name, hint=hint)
    response.set_data(body)
    response.content_type = "text/html; charset=utf-8"
    return response


def favicon():
    """Browsers and tools that ask for /favicon.ico get the page icon instead of a 404."""
    return current_app.send_static_file("favicon.svg")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, error_page)
    app.add_url_rule("/favicon.ico", endpoint="favicon", view_func=favicon)
