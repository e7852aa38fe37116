"""Alembic migrations of the app database: a database of release 0.1.0 (made from the frozen
DDL in tests/pipeline/data/, as that release's create_all made it) is upgraded with its rows intact, on
SQLite and PostgreSQL; the migrated schema is exactly what the code declares."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

import convert.dedup  # noqa: F401 - every module that declares tables
import dashboard.models  # noqa: F401
import health.alerts  # noqa: F401
import pipeline.stats  # noqa: F401
import scheduler.models  # noqa: F401
from pipeline import migrate
from pipeline.db import Base, init_db, make_engine

DATA = Path(__file__).with_name("data")
T = dt.datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/app.db"
    return request.getfixturevalue("postgres_url")


def release_0_1_schema(engine: Engine, only: set[str] | None = None) -> None:
    """Create the tables (all, or those in `only`) exactly as release 0.1.0 did."""
    ddl = (DATA / f"app_db_0_1_{engine.dialect.name}.sql").read_text()
    statements = [s.strip() for s in ddl.split(";\n") if s.strip().strip("-").strip()]
    with engine.begin() as conn:
        for statement in statements:
            sql = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
            table = sql.split(" ON ")[-1].split()[0] if "INDEX" in sql else sql.split()[2]
            if only is None or table in only:
                conn.exec_driver_sql(sql)


ROWS = {
    "dashboard_users": {
        "id": 1,
        "email": "ana@example.com",
        "password_hash": "h",
        "is_admin": True,
        "created_at": T,
    },
    "jobs": {
        "id": 7,
        "name": "daily-summary",
        "owner": "ana@example.com",
        "tarball_key": "k.tar.gz",
        "command": "python run.py",
        "output_dir": "output",
        "frequency": "daily",
        "hour": 12,
        "timeout_minutes": 60,
        "enabled": True,
        "runner": "local",
        "created_at": T,
        "updated_at": T,
    },
    "runs": {
        "id": 3,
        "job_id": 7,
        "scheduled_for": T,
        "trigger": "schedule",
        "state": "succeeded",
        "cancel_requested": False,
    },
    "hourly_stats": {
        "hour": T,
        "source": "convert",
        "outcome": "published",
        "channel": "release",
        "doc_type": "main",
        "count": 42,
    },
    "convert_seen_docs": {"doc_id": "d-1", "batch_id": "b-1", "first_seen": T},
}


def insert_rows(engine: Engine, tables: set[str]) -> None:
    with engine.begin() as conn:
        for table, row in ROWS.items():
            if table in tables:
                columns = ", ".join(row)
                values = ", ".join(f":{name}" for name in row)
                conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)


def assert_rows_intact(engine: Engine, tables: set[str]) -> None:
    with engine.connect() as conn:
        for table, row in ROWS.items():
            if table in tables:
                found = conn.execute(select(Base.metadata.tables[table])).mappings().all()
                assert [{k: r[k] for k in row} for r in found] == [row], table


def schema_differences(engine: Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_a_release_0_1_database_is_upgraded_with_its_rows_intact(database_url):
    engine = make_engine(database_url)
    release_0_1_schema(engine)
    insert_rows(engine, set(ROWS))
    with engine.connect() as conn:
        assert migrate.current(conn) is None
    init_db(engine)  # what every service does at start-up
    with engine.connect() as conn:
        assert migrate.current(conn) == migrate.head()
    assert_rows_intact(engine, set(ROWS))
    assert schema_differences(engine) == []
    init_db(engine)  # again: nothing to do, nothing lost
    assert_rows_intact(engine, set(ROWS))
    engine.dispose()


def test_a_database_only_one_service_had_started_gets_the_other_tables(database_url):
    """Before migrations each service created only its own tables (convert: three)."""
    engine = make_engine(database_url)
    convert_tables = {"convert_seen_docs", "hourly_stats", "stats_counted_batches"}
    release_0_1_schema(engine, only=convert_tables)
    insert_rows(engine, convert_tables)
    init_db(engine)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    assert_rows_intact(engine, convert_tables)
    assert schema_differences(engine) == []
    engine.dispose()


def test_migrations_create_exactly_the_declared_schema(database_url):
    """Fails when a model changes without a migration: the diff says what to migrate."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        migrate.upgrade(conn)  # migrations alone, no create_all
    assert schema_differences(engine) == []
    engine.dispose()


def test_db_current_and_upgrade_commands(data_dir):
    def db(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "db", action],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ,
        )

    before = db("current")
    assert before.returncode == 0 and before.stdout.startswith("not migrated (head is ")
    upgraded = db("upgrade")
    assert upgraded.returncode == 0
    assert upgraded.stdout == f"database at revision {migrate.head()} (head); was not migrated\n"
    assert db("current").stdout == f"{migrate.head()} (head)\n"


def test_services_starting_together_migrate_once(database_url):
    """Four processes start on a fresh database at once: one migrates under the lock, the
    others wait and find it current; none fails."""
    script = (
        "import sys, convert.dedup, scheduler.models, dashboard.models, health.alerts\n"
        "from pipeline.db import init_db, make_engine\n"
        "init_db(make_engine(sys.argv[1]))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, database_url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for process in processes:
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    engine = make_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            migrate.head()
        ]
    assert schema_differences(engine) == []
    engine.dispose()
