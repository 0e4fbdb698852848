"""Alembic's entry point for the run store: migrations on the connection the store hands over.

:func:`tlcore.runs.sql_schema.migrate` passes its own connection in the config's attributes,
so Alembic never sees the URL or its password. The advisory lock makes one process at a time
migrate; the others wait, then find nothing left to do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from tlcore.runs.sql_schema import MIGRATION_LOCK, metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("Run the migrations through tlcore.runs.sql_schema.migrate, "
                           "which passes the store's connection.")
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": MIGRATION_LOCK})
        context.run_migrations()


run_migrations_online()
