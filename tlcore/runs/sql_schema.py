"""The run store's tables, and bringing a PostgreSQL database up to them with Alembic.

The SQLite file keeps the schema it always had (``CREATE TABLE IF NOT EXISTS`` on open), so the
files people already have open unchanged. A server is shared by several machines and outlives
versions of the studio, so there the schema is versioned: Alembic's revisions under
``migrations/`` create and upgrade it, and a store that can write runs the pending ones when it
opens (one process at a time, under an advisory lock taken in ``migrations/env.py``).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x746C_6D69
"""The advisory lock id (``"tlmi"``) under which one process at a time runs the migrations."""

_IN_PROCESS = threading.Lock()
"""Alembic's ``context`` is one per process: threads that open stores migrate in turn."""

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    worker_pid INTEGER,
    worker_started REAL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0,
    notes TEXT NOT NULL DEFAULT '[]',
    summary TEXT
);
CREATE INDEX IF NOT EXISTS runs_key ON runs(key, status);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    stage TEXT NOT NULL,
    loss REAL, accuracy REAL, val_loss REAL, val_accuracy REAL,
    learning_rate REAL, seconds REAL, images_per_second REAL,
    PRIMARY KEY (run_id, epoch)
);
"""

metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
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
    sa.Index("runs_key", "key", "status"),
)
"""The same columns as :data:`SQLITE_SCHEMA`; ``REAL`` becomes ``double precision`` (times)."""

epochs = sa.Table(
    "epochs", metadata,
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("stage", sa.Text, nullable=False),
    *(sa.Column(name, sa.Double) for name in (
        "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "images_per_second")),
)


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's settings without an ``alembic.ini``: the URL never leaves the engine.

    Alembic is imported here, not at the top: it takes about half a second, which a store on
    the SQLite file (every CLI command, every worker) should not pay.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at; None for one Alembic never touched."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def pending(engine: sa.Engine) -> bool:
    """Whether the database lacks migrations this version of the studio has."""
    return current_revision(engine) != head_revision()


def migrate(engine: sa.Engine) -> bool:
    """Run the pending migrations; returns whether there were any.

    Safe with several processes (and threads) opening the store at once: each waits for the
    migration lock and finds the schema up to date once it has it.
    """
    from alembic import command

    with _IN_PROCESS:
        if not pending(engine):
            return False
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
    return True
