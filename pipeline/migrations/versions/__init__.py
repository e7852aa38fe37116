"""One module per schema change, oldest first (Alembic revision chain)."""
