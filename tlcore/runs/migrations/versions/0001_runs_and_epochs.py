"""The first schema on a server: runs and epochs, with the columns the SQLite file has.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "images_per_second")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("owner", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double),
        sa.Column("finished_at", sa.Double),
        sa.Column("error", sa.Text),
        sa.Column("worker_pid", sa.Integer),
        sa.Column("worker_started", sa.Double),
        sa.Column("stop_requested", sa.Integer, nullable=False, server_default="0"),
        sa.Column("progress", sa.Double, nullable=False, server_default="0"),
        sa.Column("notes", sa.Text, nullable=False, server_default="[]"),
        sa.Column("summary", sa.Text),
    )
    op.create_index("runs_key", "runs", ["key", "status"])
    op.create_table(
        "epochs",
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),
        *(sa.Column(name, sa.Double) for name in METRICS),
    )


def downgrade() -> None:
    op.drop_table("epochs")
    op.drop_table("runs")
