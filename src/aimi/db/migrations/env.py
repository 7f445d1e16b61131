"""Alembic environment: runs on the connection `Database.migrate` hands over."""

from __future__ import annotations

from alembic import context

from aimi.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` run by hand: not supported, use `aimi db upgrade`
    raise RuntimeError("run migrations with `aimi db upgrade` (or start `aimi serve`)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
