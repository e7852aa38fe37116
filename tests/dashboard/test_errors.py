"""Error pages: the dashboard's own layout (stylesheet, navigation), JSON under /api/."""

from __future__ import annotations

import html

import pytest

from dashboard import create_app
from tests.support.dashboard import sign_in


@pytest.fixture
def app_users() -> dict[str, bool]:
    return {"ada@example.org": False}


@pytest.mark.parametrize("path", ["/no/such/page", "/public/never-published/data/"])
def test_not_found_is_a_styled_page_with_navigation(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.content_type == "text/html; charset=utf-8"
    html = response.get_data(as_text=True)
    assert "/static/style.css" in html  # the dashboard's layout, not Werkzeug's bare page
    assert "Not Found" in html and 'href="/public/"' in html
    assert "The requested URL was not found on the server" not in html


def test_signed_in_not_found_keeps_the_menu(client):
    sign_in(client, "ada@example.org")
    html = client.get("/runs/999").get_data(as_text=True)
    assert "Sign out" in html and "/static/style.css" in html


def test_method_not_allowed_keeps_its_allow_header(client):
    response = client.delete("/login")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert "/static/style.css" in response.get_data(as_text=True)


def test_api_errors_stay_json_even_without_a_matching_route(client):
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.is_json and response.get_json()["error"] == "not_found"


def test_favicon_is_served_and_linked(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert 'rel="icon"' in client.get("/login").get_data(as_text=True)


def test_a_server_error_is_styled_too(settings):
    app = create_app(settings)

    @app.route("/boom")
    def boom():
        raise RuntimeError("a bug")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    page = html.unescape(response.get_data(as_text=True))
    assert "/static/style.css" in page and "the dashboard's log says what" in page
    assert "a bug" not in page  # no internals on the page
