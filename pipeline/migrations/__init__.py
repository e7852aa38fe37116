"""Alembic migrations of the app database (applied by pipeline.migrate, at start-up)."""
