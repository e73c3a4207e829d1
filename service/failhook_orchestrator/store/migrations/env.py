"""Alembic environment: migrations run on the connection the orchestrator hands over."""

from __future__ import annotations

from alembic import context

from failhook_orchestrator.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("failhook runs its migrations itself at start (failhook_orchestrator.store.database)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
