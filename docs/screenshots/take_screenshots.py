"""Retake the README's screenshots of /telemetry/dist and /telemetry/evo with headless chromium.

    .venv/bin/python docs/screenshots/take_screenshots.py [OUT_DIR]

Aggregates the real Firefox 23 submission of ../shared/fixtures (published three times, two
builds) in a temporary data directory, serves the dashboard on a free port and captures both
views (desktop width; `--phone` adds 390 px wide ones).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(Path(__file__).parent))
    parser.add_argument("--phone", action="store_true", help="also take 390 px wide screenshots")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="screenshots-"))
    os.environ["TELEMETRY_DATA_DIR"] = str(tmp / "var")
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from dashboard import create_app
    from launcher.demo import fixtures_dir
    from pipeline.config import load_settings
    from tests.support.aggregates_data import publish_firefox23

    settings = load_settings()
    publish_firefox23(settings, fixtures_dir(), tmp)
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/telemetry"
    views = {
        "dist": "/dist?metric=GC_MS&channel=release&version=23.0.1&compare=1"
        "&b_build_id=20130815000000&mode=percent",
        "evo": "/evo?metric=GC_MS&channel=release&by=build_id",
    }
    sizes = [(1100, 900, "")] + ([(390, 844, "-phone")] if args.phone else [])
    out = Path(args.out)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for width, height, suffix in sizes:
            page = browser.new_page(viewport={"width": width, "height": height})
            for name, path in views.items():
                page.goto(base + path)
                attribute = "data-bars" if name == "dist" else "data-points"
                page.wait_for_selector(f"#tm-chart[{attribute}]:not([{attribute}='0'])")
                page.screenshot(path=str(out / f"{name}{suffix}.png"), full_page=True)
        browser.close()
    server.shutdown()
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
