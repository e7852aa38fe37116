"""Fixtures of the scheduler tests: a fast service configuration, a session factory, the
public store."""

from __future__ import annotations

import pytest

from pipeline.db import make_engine, session_factory
from pipeline.stores import open_store
from scheduler.config import SchedulerConfig


@pytest.fixture
def config() -> SchedulerConfig:
    return SchedulerConfig(
        grace_seconds=3600,
        timeout_unit_seconds=1,
        kill_grace_seconds=1,
        sync_seconds=0.3,
        dispatch_seconds=0.2,
    )


@pytest.fixture
def Session(settings):
    """Sessions on the app database of the test's data directory, tables created."""
    engine = make_engine(settings.database_url)
    from pipeline.db import init_db

    init_db(engine)
    return session_factory(engine)


@pytest.fixture
def public(settings):
    return open_store(settings.public_url)


@pytest.fixture
def session(Session):
    """One session on the test's app database, tables created."""
    with Session() as session:
        yield session
