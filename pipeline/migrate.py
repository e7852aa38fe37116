"""Schema migrations of the app database with Alembic (scripts in pipeline/migrations/).

`pipeline.db.init_db` calls `upgrade` at every service's start-up while it holds the start-up
lock, so one process migrates and the others wait and then find the database current.
`python -m pipeline db upgrade|current|heads` runs the same by hand.

Adding a schema change: write the next revision in pipeline/migrations/versions/ (copy the
shape of the newest one; `down_revision` names it). tests/pipeline/test_db_migrations.py fails while
the declared tables and the migrated schema differ, and shows the difference.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger(__name__)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The newest revision (read once per process: the scripts do not change while it runs)."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations must form one chain; heads: {heads}")
    return heads[0]


def current(connection: Connection) -> str | None:
    """The database's revision; None before the first migration (or for a new database)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> bool:
    """Bring the database to the newest revision; False when it already was (nothing run)."""
    before = current(connection)
    if before == head():
        return False
    command.upgrade(alembic_config(connection), "head")
    log.info("app database migrated from %s to revision %s", before or "no revision", head())
    return True
