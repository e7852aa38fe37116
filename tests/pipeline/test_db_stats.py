"""The application database helpers and the hourly counters, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading

import pytest

from pipeline.db import check_db, init_db, make_engine
from pipeline.errors import ConfigError
from pipeline.stats import add_counts, hour_of, read_counts

HOUR = dt.datetime(2026, 1, 1, 5, 0)


def test_counts_accumulate_per_key_and_hour(engine):
    add_counts(engine, "ingest", HOUR.replace(minute=10), {("accepted", "release", "main"): 3})
    add_counts(
        engine,
        "ingest",
        HOUR.replace(minute=50),
        {("accepted", "release", "main"): 4, ("accepted", "beta", "main"): 1},
    )
    add_counts(engine, "convert", HOUR, {("bad_json", "beta", "main"): 2})
    assert read_counts(engine, HOUR) == [
        (HOUR, "convert", "bad_json", "beta", "main", 2),
        (HOUR, "ingest", "accepted", "beta", "main", 1),
        (HOUR, "ingest", "accepted", "release", "main", 7),
    ]
    assert [row[1] for row in read_counts(engine, HOUR, source="convert")] == ["convert"]


def test_read_counts_starts_at_the_hour_of_since(engine):
    add_counts(engine, "ingest", HOUR, {("accepted", "release", "main"): 1})
    add_counts(engine, "ingest", HOUR + dt.timedelta(hours=2), {("accepted", "release", "main"): 1})
    rows = read_counts(engine, HOUR + dt.timedelta(hours=1, minutes=59))
    assert [row[0] for row in rows] == [HOUR + dt.timedelta(hours=2)]
    assert len(read_counts(engine, HOUR)) == 2


def test_zero_and_empty_counts_write_nothing(engine):
    add_counts(engine, "ingest", HOUR, {})
    add_counts(engine, "ingest", HOUR, {("accepted", "release", "main"): 0})
    assert read_counts(engine, HOUR) == []


def test_concurrent_writers_lose_no_counts(engine):
    def report() -> None:
        for _ in range(10):
            add_counts(engine, "convert", HOUR, {("published", "release", "main"): 1})

    threads = [threading.Thread(target=report) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert read_counts(engine, HOUR) == [(HOUR, "convert", "published", "release", "main", 40)]


def test_aware_datetimes_are_stored_as_utc_hours():
    moment = dt.datetime(2026, 1, 1, 6, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert hour_of(moment) == HOUR


def test_unsupported_database_url_names_the_setting():
    with pytest.raises(ConfigError, match="^TELEMETRY_DATABASE_URL: unsupported"):
        make_engine("mysql://db/app")


def test_sqlite_database_under_a_regular_file_names_the_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="^TELEMETRY_DATABASE_URL: "):
        make_engine(f"sqlite:///{blocker}/app.db")


def test_unreachable_postgres_is_one_config_error():
    from tests.support.servers import free_port

    with pytest.raises(ConfigError, match="^TELEMETRY_DATABASE_URL: cannot connect"):
        check_db(f"postgresql://nobody@127.0.0.1:{free_port()}/none")


def _init_in_child(url: str, barrier) -> None:
    import convert.dedup  # noqa: F401 - each declares more tables, widening the race
    import dashboard.models  # noqa: F401
    import scheduler.models  # noqa: F401
    from pipeline.db import init_db as init
    from pipeline.db import make_engine as engine_for

    barrier.wait()
    init(engine_for(url), attempts=1)  # the lock alone must prevent the race, no retry


@contextlib.contextmanager
def _fresh_database(kind: str, request, tmp_path, number: int):
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/race-{number}.db"
        return
    with request.getfixturevalue("postgres_server").fresh_database("race") as url:
        yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_services_creating_tables_at_once_on_a_fresh_database_all_succeed(kind, request, tmp_path):
    """`make run` starts five services on a fresh app.db at the same moment."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_number in range(6):
        with _fresh_database(kind, request, tmp_path, round_number) as url:
            barrier = context.Barrier(6)
            children = [
                context.Process(target=_init_in_child, args=(url, barrier)) for _ in range(6)
            ]
            for child in children:
                child.start()
            for child in children:
                child.join(60)
            assert [child.exitcode for child in children] == [0] * 6


def test_concurrent_batches_counting_one_hour_in_any_order_never_deadlock(engine):
    """Workers upsert the same hour's rows; on PostgreSQL rows locked in different orders
    deadlock, so the rows are upserted in key order whatever order the batch saw them in."""
    import random

    from pipeline.stats import add_many_once

    keys = [("published", f"ch{i}", "main") for i in range(30)]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        shuffle = random.Random(worker)
        for batch in range(15):
            order = keys[:]
            shuffle.shuffle(order)
            try:
                add_many_once(
                    engine,
                    "convert",
                    f"w{worker}-b{batch}",
                    [(HOUR, "convert", dict.fromkeys(order, 1))],
                )
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(row[-1] for row in read_counts(engine, HOUR)) == 4 * 15 * len(keys)


def test_an_unusable_table_creation_lock_is_one_config_error(tmp_path):
    (tmp_path / "app.db.init-lock").mkdir()  # something that cannot be opened as the lock file
    engine = make_engine(f"sqlite:///{tmp_path}/app.db")
    with pytest.raises(ConfigError, match="^TELEMETRY_DATABASE_URL: cannot open the lock file"):
        init_db(engine)
    engine.dispose()
