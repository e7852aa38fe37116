"""Baseline: the tables of release 0.1.0, as `Base.metadata.create_all` made them.

A database made before migrations existed has some or all of these tables and no
`alembic_version`; this revision creates only the tables that are missing (each service used to
create only the tables it declared), leaves existing ones and their rows alone, and marks the
database as migrated. Later schema changes are later revisions.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[tuple[str, list, list[tuple[str, list[str]]]]]:
    """(table, columns and constraints, indexes) in dependency order."""
    return [
        (
            "alerts",
            [
                sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
                sa.Column("kind", sa.String(length=32), nullable=False),
                sa.Column("subject", sa.String(length=64), nullable=False),
                sa.Column("started_at", sa.DateTime(), nullable=False),
                sa.Column("ended_at", sa.DateTime(), nullable=True),
                sa.Column("detected_at", sa.DateTime(), nullable=True),
                sa.Column("expected", sa.Float(), nullable=False),
                sa.Column("seen", sa.Float(), nullable=False),
                sa.Column("details", sa.Text(), nullable=False),
                sa.Column("notified_open", sa.Boolean(), nullable=False),
                sa.Column("notified_closed", sa.Boolean(), nullable=False),
                sa.PrimaryKeyConstraint("id"),
            ],
            [("ix_alerts_kind", ["kind"]), ("ix_alerts_started_at", ["started_at"])],
        ),
        (
            "convert_seen_docs",
            [
                sa.Column("doc_id", sa.String(length=128), nullable=False),
                sa.Column("batch_id", sa.String(length=255), nullable=False),
                sa.Column("first_seen", sa.DateTime(), nullable=False),
                sa.PrimaryKeyConstraint("doc_id"),
            ],
            [("ix_convert_seen_docs_first_seen", ["first_seen"])],
        ),
        (
            "dashboard_users",
            [
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("email", sa.String(length=320), nullable=False),
                sa.Column("password_hash", sa.String(length=500), nullable=False),
                sa.Column("is_admin", sa.Boolean(), nullable=False),
                sa.Column("created_at", sa.DateTime(), nullable=False),
                sa.PrimaryKeyConstraint("id"),
                sa.UniqueConstraint("email"),
            ],
            [],
        ),
        (
            "dashboard_workers",
            [
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("name", sa.String(length=100), nullable=False),
                sa.Column("owner", sa.String(length=320), nullable=False),
                sa.Column("provider", sa.String(length=16), nullable=False),
                sa.Column("ssh_public_key", sa.Text(), nullable=False),
                sa.Column("state", sa.String(length=16), nullable=False),
                sa.Column("instance_id", sa.String(length=100), nullable=True),
                sa.Column("address", sa.String(length=500), nullable=True),
                sa.Column("connect_command", sa.Text(), nullable=True),
                sa.Column("launched_at", sa.DateTime(), nullable=False),
                sa.Column("expires_at", sa.DateTime(), nullable=False),
                sa.Column("warned_at", sa.DateTime(), nullable=True),
                sa.Column("terminated_at", sa.DateTime(), nullable=True),
                sa.Column("reason", sa.Text(), nullable=True),
                sa.PrimaryKeyConstraint("id"),
            ],
            [("ix_dashboard_workers_owner", ["owner"]), ("ix_dashboard_workers_state", ["state"])],
        ),
        (
            "hourly_stats",
            [
                sa.Column("hour", sa.DateTime(), nullable=False),
                sa.Column("source", sa.String(length=16), nullable=False),
                sa.Column("outcome", sa.String(length=64), nullable=False),
                sa.Column("channel", sa.String(length=64), nullable=False),
                sa.Column("doc_type", sa.String(length=64), nullable=False),
                sa.Column("count", sa.Integer(), nullable=False),
                sa.PrimaryKeyConstraint("hour", "source", "outcome", "channel", "doc_type"),
            ],
            [],
        ),
        (
            "jobs",
            [
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("name", sa.String(length=100), nullable=False),
                sa.Column("owner", sa.String(length=320), nullable=False),
                sa.Column("tarball_key", sa.String(length=500), nullable=False),
                sa.Column("command", sa.Text(), nullable=False),
                sa.Column("output_dir", sa.String(length=500), nullable=False),
                sa.Column("frequency", sa.String(length=16), nullable=False),
                sa.Column("day_of_week", sa.Integer(), nullable=True),
                sa.Column("day_of_month", sa.Integer(), nullable=True),
                sa.Column("hour", sa.Integer(), nullable=False),
                sa.Column("timeout_minutes", sa.Integer(), nullable=False),
                sa.Column("enabled", sa.Boolean(), nullable=False),
                sa.Column("end_date", sa.DateTime(), nullable=True),
                sa.Column("runner", sa.String(length=16), nullable=False),
                sa.Column("created_at", sa.DateTime(), nullable=False),
                sa.Column("updated_at", sa.DateTime(), nullable=False),
                sa.Column("expiry_notified_at", sa.DateTime(), nullable=True),
                sa.PrimaryKeyConstraint("id"),
                sa.UniqueConstraint("name"),
            ],
            [("ix_jobs_owner", ["owner"])],
        ),
        (
            "scheduler_heartbeats",
            [
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("host", sa.String(length=255), nullable=False),
                sa.Column("pid", sa.Integer(), nullable=False),
                sa.Column("started_at", sa.DateTime(), nullable=False),
                sa.Column("beat_at", sa.DateTime(), nullable=False),
                sa.PrimaryKeyConstraint("id"),
            ],
            [],
        ),
        (
            "stats_counted_batches",
            [
                sa.Column("source", sa.String(length=16), nullable=False),
                sa.Column("batch_id", sa.String(length=255), nullable=False),
                sa.Column("counted_at", sa.DateTime(), nullable=False),
                sa.PrimaryKeyConstraint("source", "batch_id"),
            ],
            [("ix_stats_counted_batches_counted_at", ["counted_at"])],
        ),
        (
            "dashboard_api_tokens",
            [
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("user_id", sa.Integer(), nullable=False),
                sa.Column("label", sa.String(length=100), nullable=False),
                sa.Column("token_hash", sa.String(length=64), nullable=False),
                sa.Column("created_at", sa.DateTime(), nullable=False),
                sa.Column("last_used_at", sa.DateTime(), nullable=True),
                sa.ForeignKeyConstraint(["user_id"], ["dashboard_users.id"], ondelete="CASCADE"),
                sa.PrimaryKeyConstraint("id"),
                sa.UniqueConstraint("token_hash"),
            ],
            [("ix_dashboard_api_tokens_user_id", ["user_id"])],
        ),
        (
            "runs",
            [
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("job_id", sa.Integer(), nullable=False),
                sa.Column("scheduled_for", sa.DateTime(), nullable=False),
                sa.Column("trigger", sa.String(length=16), nullable=False),
                sa.Column("state", sa.String(length=16), nullable=False),
                sa.Column("started_at", sa.DateTime(), nullable=True),
                sa.Column("finished_at", sa.DateTime(), nullable=True),
                sa.Column("exit_code", sa.Integer(), nullable=True),
                sa.Column("reason", sa.Text(), nullable=True),
                sa.Column("log_key", sa.String(length=500), nullable=True),
                sa.Column("published_files", sa.JSON(), nullable=True),
                sa.Column("instance_id", sa.String(length=64), nullable=True),
                sa.Column("cancel_requested", sa.Boolean(), nullable=False),
                sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
                sa.PrimaryKeyConstraint("id"),
                sa.UniqueConstraint("job_id", "scheduled_for", name="one_run_per_firing"),
            ],
            [("ix_runs_job_id", ["job_id"]), ("ix_runs_state", ["state"])],
        ),
    ]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns, indexes in _tables():
        if name in existing:
            continue
        op.create_table(name, *columns)
        for index, index_columns in indexes:
            op.create_index(index, name, index_columns, unique=False)


def downgrade() -> None:
    for name, _columns, _indexes in reversed(_tables()):
        op.drop_table(name)
