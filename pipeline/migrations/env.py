"""Alembic's environment: always run on the connection pipeline.migrate hands over.

The connection already holds the start-up lock (pipeline.db.init_db), so exactly one process
migrates while the others wait. Offline mode (SQL scripts) is not offered.
"""

from __future__ import annotations

from alembic import context

from pipeline.db import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
)
with context.begin_transaction():
    context.run_migrations()
