"""scheduler_reserved_names: a deleted or renamed job's name stays reserved to its owner.

Its published output is still served at `/public/<name>/`, so nobody else may take the name
and publish there; an admin releases it (`python -m scheduler release-name NAME`). Added only
when missing (a database a pre-migration build of the sandbox work touched already has it).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "scheduler_reserved_names" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "scheduler_reserved_names",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("owner", sa.String(length=320), nullable=False),
        sa.Column("reserved_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("scheduler_reserved_names")
