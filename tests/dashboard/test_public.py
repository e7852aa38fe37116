"""The public listing of `<job_name>/data/`: no sign-in, directories, downloads, no escapes,
and the same behaviour on an S3 public store (moto)."""

from __future__ import annotations

import dataclasses

import boto3
import pytest

from dashboard import create_app
from pipeline.stores import open_store


@pytest.fixture
def public(settings):
    store = open_store(settings.public_url)
    store.put("report/data/summary.txt", b"total 42\n")
    store.put("report/data/2024/05/counts.csv", b"a,b\n1,2\n")
    store.put("report/data/page.html", b"<script>alert(1)</script>")
    store.put("report/logs/1.log", b"private-ish log\n")
    return store


def test_listing_needs_no_sign_in_and_shows_files_and_directories(app, public):
    client = app.test_client()
    response = client.get("/public/report/data/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/public/report/data/summary.txt"' in html
    assert 'href="/public/report/data/2024/"' in html
    assert "9</td>" in html  # size of summary.txt


def test_nested_directory_listing(app, public):
    html = app.test_client().get("/public/report/data/2024/05/").get_data(as_text=True)
    assert 'href="/public/report/data/2024/05/counts.csv"' in html


def test_directory_without_slash_redirects(app, public):
    response = app.test_client().get("/public/report/data/2024")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/public/report/data/2024/")


def test_text_file_is_served_inline_and_download_as_attachment(app, public):
    client = app.test_client()
    response = client.get("/public/report/data/summary.txt")
    assert response.status_code == 200
    assert response.data == b"total 42\n"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Content-Disposition"].startswith("inline")
    response = client.get("/public/report/data/summary.txt?download=1")
    assert response.headers["Content-Disposition"] == 'attachment; filename="summary.txt"'


def test_html_is_never_rendered_on_our_origin(app, public):
    response = app.test_client().get("/public/report/data/page.html")
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "path",
    [
        "/public/report/data/missing.txt",
        "/public/nojob/data/",
        "/public/report/data/../logs/1.log",
        "/public/report/data/%2e%2e/logs/1.log",
        "/public/bad%20name/data/",
        "/public/report/logs/1.log",
    ],
)
def test_missing_or_escaping_paths_are_404(app, public, path):
    assert app.test_client().get(path).status_code == 404


def test_public_index_lists_jobs(app, public):
    html = app.test_client().get("/public/").get_data(as_text=True)
    assert 'href="/public/report/data/"' in html


def test_listing_works_on_an_s3_public_store(moto, settings):
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="public-bucket")
    s3_settings = dataclasses.replace(
        settings, public_url="s3://public-bucket/pub", s3_endpoint_url=moto.endpoint
    )
    store = open_store(s3_settings.public_url, endpoint_url=moto.endpoint)
    store.put("report/data/summary.txt", b"from s3\n")
    client = create_app(s3_settings).test_client()
    assert 'href="/public/report/data/summary.txt"' in client.get("/public/report/data/").get_data(
        as_text=True
    )
    assert client.get("/public/report/data/summary.txt").data == b"from s3\n"


def test_published_json_and_text_have_one_correct_content_type(app, public):
    public.put("report/data/summary.json", b'{"objects": 3}')
    client = app.test_client()
    response = client.get("/public/report/data/summary.json")
    assert response.headers["Content-Type"] == "application/json"  # was text/plain twice charset
    assert response.get_json() == {"objects": 3}
    assert (
        client.get("/public/report/data/summary.txt").headers["Content-Type"]
        == "text/plain; charset=utf-8"
    )


def test_index_lists_only_jobs_with_published_data(app, public):
    public.put("failed-job/logs/1.log", b"it failed\n")  # a job whose runs never published
    html = app.test_client().get("/public/").get_data(as_text=True)
    assert 'href="/public/report/data/"' in html
    assert "failed-job" not in html  # would be a dead link to a 404
