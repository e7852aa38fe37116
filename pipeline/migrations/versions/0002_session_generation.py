"""Dashboard accounts: revocable sessions, the sign-in record and the sign-in throttle.

`dashboard_users.session_generation` is the counter that revokes a user's session cookies.

Every session cookie carries the generation it was issued under; logout, a password change
and an admin's "sign out everywhere" raise it, so older cookies stop working. Existing users
start at 0. The column may already be there on a database a pre-migration build of the
accounts work touched, so it is added only when missing; so are the two new tables
(`dashboard_sign_in_events`, the admins' sign-in page; `dashboard_rate_limits`, the throttle's
fixed-window counters shared by every dashboard process).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    columns = {c["name"] for c in inspector.get_columns("dashboard_users")}
    if "dashboard_sign_in_events" not in tables:
        op.create_table(
            "dashboard_sign_in_events",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("at", sa.DateTime(), nullable=False),
            sa.Column("email", sa.String(length=320), nullable=False),
            sa.Column("client_address", sa.String(length=100), nullable=False),
            sa.Column("method", sa.String(length=16), nullable=False),
            sa.Column("outcome", sa.String(length=32), nullable=False),
            sa.Column("detail", sa.String(length=500), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_dashboard_sign_in_events_at", "dashboard_sign_in_events", ["at"])
        op.create_index("ix_dashboard_sign_in_events_email", "dashboard_sign_in_events", ["email"])
    if "dashboard_rate_limits" not in tables:
        op.create_table(
            "dashboard_rate_limits",
            sa.Column("key", sa.String(length=1000), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.Column("expires_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    if "session_generation" not in columns:
        op.add_column(
            "dashboard_users",
            sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"),
        )


def downgrade() -> None:
    op.drop_column("dashboard_users", "session_generation")
    op.drop_table("dashboard_rate_limits")
    op.drop_table("dashboard_sign_in_events")
