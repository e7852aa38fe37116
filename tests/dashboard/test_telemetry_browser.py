"""The /telemetry views in a real browser (Debian chromium driven by Playwright), without
signing in: the chart is drawn with one bar per bucket of the real Firefox 23 histograms, a
metric picked by name redraws it, and the permalink brings back the same state."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from dashboard import create_app
from tests.support.aggregates_data import publish_builds, publish_firefox23

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
VENDORED = Path(__file__).resolve().parents[2] / "dashboard/static/vendor/chart.umd.min.js"


@pytest.fixture
def site(settings, shared_fixtures, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make setup installs it)")
    if not VENDORED.exists():
        pytest.skip("the chart library is not vendored yet (make setup copies it)")
    publish_firefox23(settings, shared_fixtures, tmp_path)
    app = create_app(settings, {"AGGREGATES_SYNC_SECONDS": 0})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def reference(shared_fixtures):
    path = shared_fixtures / "histograms/a55c55edf302.buckets.json"
    return json.loads(path.read_text())["histograms"]


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # a phone-sized viewport: the views must work there
        page = browser.new_page(viewport={"width": 390, "height": 844}, accept_downloads=True)
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, errors


def test_distribution_picks_a_metric_and_the_permalink_restores_it(site, page, reference):
    from playwright.sync_api import expect

    page.goto(f"{site}/telemetry/dist")
    chart = page.locator("#tm-chart")
    expect(chart).to_have_attribute("data-bars", str(len(reference["GC_MS"]["buckets"])))
    expect(page.locator("#tm-description")).to_have_text("Time spent running JS GC (ms)")

    page.fill("input[name=metric]", "CYCLE_COLLECTOR")
    page.dispatch_event("input[name=metric]", "change")
    expect(chart).to_have_attribute("data-bars", str(len(reference["CYCLE_COLLECTOR"]["buckets"])))
    page.check("input[name=mode][value=percent]")
    page.check("input[name=compare]")
    page.select_option("select[name=b_build_id]", "20130815000000")
    expect(page.locator("#tm-stats tbody tr")).to_have_count(2)
    expect(page.locator("#tm-stats tbody tr").nth(1)).to_contain_text("build_id=20130815000000")
    permalink = page.locator("#tm-permalink").get_attribute("href")
    assert "metric=CYCLE_COLLECTOR" in permalink and "mode=percent" in permalink

    page.goto("about:blank")
    page.goto(permalink)
    expect(chart).to_have_attribute("data-bars", str(len(reference["CYCLE_COLLECTOR"]["buckets"])))
    expect(page.locator("input[name=metric]")).to_have_value("CYCLE_COLLECTOR")
    expect(page.locator("input[name=mode][value=percent]")).to_be_checked()
    expect(page.locator("input[name=compare]")).to_be_checked()
    expect(page.locator("select[name=b_build_id]")).to_have_value("20130815000000")
    expect(page.locator("#tm-stats tbody tr")).to_have_count(2)
    chart_data = page.evaluate(
        "() => Chart.getChart(document.getElementById('tm-chart')).data.datasets.length"
    )
    assert chart_data == 2  # the overlay is drawn too

    with page.expect_download() as download:
        page.click("#tm-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("bucket_lower_bound,count release 23.0.1")
    assert len(lines) == 1 + len(reference["CYCLE_COLLECTOR"]["buckets"])
    with page.expect_download() as download:
        page.click("#tm-json")
    shown = json.loads(Path(download.value.path()).read_text())
    assert [h["metric"] for h in shown] == ["CYCLE_COLLECTOR", "CYCLE_COLLECTOR"]


def test_evolution_draws_one_point_per_build_and_keeps_its_state(site, page):
    from playwright.sync_api import expect

    page.goto(f"{site}/telemetry/evo")
    chart = page.locator("#tm-chart")
    expect(chart).to_have_attribute("data-points", "2")
    page.select_option("select[name=by]", "submission_date")
    page.fill("input[name=metric]", "SIMPLE_MEASURES_UPTIME")
    page.dispatch_event("input[name=metric]", "change")
    expect(page.locator("#tm-hints")).to_contain_text("No implausible shift")
    permalink = page.locator("#tm-permalink").get_attribute("href")
    page.goto("about:blank")
    page.goto(permalink)
    expect(chart).to_have_attribute("data-points", "2")
    expect(page.locator("select[name=by]")).to_have_value("submission_date")
    expect(page.locator("input[name=metric]")).to_have_value("SIMPLE_MEASURES_UPTIME")


@pytest.fixture
def regression_site(settings):
    if not Path(CHROMIUM).exists() or not VENDORED.exists():
        pytest.skip("needs Debian chromium and the vendored chart library (make setup)")
    spread, shifted = [50] * 20, [0, 0, *([50] * 18)]
    publish_builds(
        settings, {"20261101000000": (10_000, spread), "20261102000000": (10_000, shifted)}
    )
    app = create_app(settings, {"AGGREGATES_SYNC_SECONDS": 0})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def test_regression_hint_links_to_a_comparison_of_the_two_builds(regression_site, page):
    from playwright.sync_api import expect

    page.goto(f"{regression_site}/telemetry/evo?metric=PAGE_LOAD_MS&channel=nightly")
    hint = page.locator("#tm-hints li")
    expect(hint).to_contain_text(
        "Median up from 100 to 110 between 20261101000000 and 20261102000000"
    )
    hint.locator("a:has-text('compare two builds')").click()
    expect(page.locator("#tm-chart")).to_have_attribute("data-bars", "20")
    rows = page.locator("#tm-stats tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("build_id=20261101000000")
    expect(rows.nth(1)).to_contain_text("build_id=20261102000000")
