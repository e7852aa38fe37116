"""Benchmark: what a wrong password costs the dashboard, for a known and an unknown account,
and what a throttled attempt costs.

Prints `name: value unit` lines (median CPU milliseconds of this process per request, through
the Flask test client on a temporary data directory). Before the dummy-hash change an unknown
account cost a few ms and a known one ~100 ms, which told an attacker which accounts exist;
the two figures should now be close, and a throttled attempt should cost no hashing at all.

    .venv/bin/python bench/dashboard_signin.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(client, token: str, email: str, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        client.post("/login", data={"email": email, "password": "wrong guess", "csrf_token": token})
        samples.append((time.process_time() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    os.environ["TELEMETRY_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-signin-")
    from dashboard import create_app, database
    from dashboard.users import create_user
    from tests.support.dashboard import csrf_token

    limits = {
        "SIGNIN_LIMIT_PER_ACCOUNT": "1000000 per hour",
        "SIGNIN_LIMIT_PER_ADDRESS": "1000000 per hour",
    }
    app = create_app(None, limits)
    with app.app_context():
        create_user(database.db(), "known@example.org", "the right password")
    client = app.test_client()
    token = csrf_token(client, "/login")
    print(
        f"signin_wrong_password_known_account: {median_ms(client, token, 'known@example.org', args.repeats):.1f} ms"
    )
    print(
        f"signin_wrong_password_unknown_account: {median_ms(client, token, 'nobody@example.org', args.repeats):.1f} ms"
    )

    throttled = create_app(None, {"SIGNIN_LIMIT_PER_ACCOUNT": "1 per hour"})
    client = throttled.test_client()
    token = csrf_token(client, "/login")
    client.post("/login", data={"email": "x@example.org", "password": "no", "csrf_token": token})
    print(
        f"signin_throttled_attempt: {median_ms(client, token, 'x@example.org', args.repeats):.1f} ms"
    )


if __name__ == "__main__":
    main()
