"""The application database (SQLite by default, PostgreSQL by URL) shared by the services.

Each service declares its tables on the one `Base` below; `init_db` creates whatever tables
the imported modules declared, so a service never needs another service's code to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import urlparse

from sqlalchemy import URL, Connection, Engine, Table, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from pipeline.errors import ConfigError


class Base(DeclarativeBase):
    pass


def make_engine(url: str, setting: str = "TELEMETRY_DATABASE_URL") -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so several processes can share it."""
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    setting, f"cannot create the directory for {path}: {exc}"
                ) from exc
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            _use_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if scheme in ("postgres", "postgresql") or scheme.startswith("postgresql+"):
        return create_engine(_postgres_driver(url), pool_pre_ping=True)
    raise ConfigError(setting, f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


@retry(
    retry=retry_if_exception(_locked),
    wait=wait_random_exponential(multiplier=0.01, max=0.5),
    stop=stop_after_delay(30),
    reraise=True,
)
def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL once (the mode is stored in the file, so later opens see it).

    The switch needs the file to itself and SQLite answers "database is locked" at once,
    without waiting for the busy timeout, when another process holds it: several services
    opening a fresh app.db together hit exactly that, so the switch is retried.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")


def _postgres_driver(url: str) -> URL:
    """Pick the installed driver for a bare `postgresql://` URL.

    SQLAlchemy 2.1 maps a bare URL to psycopg 3, while the project installs psycopg2-binary;
    an explicit `postgresql+driver://` is left alone.
    """
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if "+" not in parsed.drivername:
        try:
            import psycopg  # noqa: F401

            driver = "postgresql+psycopg"
        except ImportError:
            driver = "postgresql+psycopg2"
        parsed = parsed.set(drivername=driver)
    return parsed


def check_db(url: str, setting: str = "TELEMETRY_DATABASE_URL") -> None:
    """Connect once; a ConfigError naming the setting says why it failed (for `check`)."""
    engine = make_engine(url, setting)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any driver error means "unusable"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(setting, f"cannot connect: {first_line}") from exc
    finally:
        engine.dispose()


# Any fixed number: the PostgreSQL advisory lock that serialises table creation.
DDL_LOCK_KEY = 0x7E1E_2013


def init_db(engine: Engine, attempts: int = 5) -> None:
    """Migrate the database to the newest schema (pipeline.migrate, Alembic), then create any
    declared table no migration knows yet; idempotent, and safe when services race.

    `make run` starts several services against a fresh database at once, and `create_all`
    checks and creates in separate steps, so unguarded processes trip over each other's
    tables ("already exists"). Table creation is therefore serialised: by an advisory lock on
    PostgreSQL and a lock file beside an SQLite database. A race that still happens (say, a
    process of an older version without the lock) is retried: checking again finds the table
    and creates only what is still missing. The migrations run under the same lock: one
    process migrates, the others wait and then find the database current.
    """
    from pipeline import migrate

    for attempt in range(attempts):
        try:
            with _ddl_lock(engine) as bind, _transaction(bind) as conn:
                migrate.upgrade(conn)
                Base.metadata.create_all(conn)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            message = str(exc).lower()
            racing = "already exists" in message or "duplicate key" in message
            if not racing or attempt == attempts - 1:
                raise


@contextlib.contextmanager
def _ddl_lock(engine: Engine) -> Iterator[Engine | Connection]:
    """Hold a lock that only one process at a time can hold; yields what to create tables on."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK_KEY})
            yield conn
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield engine
        return
    path = f"{database}.init-lock"
    try:
        lock = _open_lock_file(path)
    except OSError as exc:
        raise ConfigError(
            "TELEMETRY_DATABASE_URL", f"cannot open the lock file {path}: {exc.strerror}"
        ) from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield engine
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """A connection in a transaction: `bind` itself when it is one already (PostgreSQL's lock)."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.begin() as conn:
        yield conn


def _open_lock_file(path: str) -> BinaryIO:
    try:
        return open(path, "a+b")  # noqa: SIM115 - the caller closes it
    except PermissionError:
        return open(path, "rb")  # noqa: SIM115 - another user's lock file: flock needs no write


def dialect_insert(engine: Engine, table: Table | type[Base]):
    """An INSERT for `table` in the engine's dialect, which offers `on_conflict_do_*`
    (the two databases the pipeline supports spell it alike)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
