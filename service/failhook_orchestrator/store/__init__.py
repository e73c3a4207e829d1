"""Persistence of runs and dead letters: SQLAlchemy 2 async Core on SQLite or PostgreSQL.

The store knows no gRPC. :func:`open_store` picks the backend from the database URL, applies the
Alembic migrations and returns a :class:`SqlRunStore` implementing the engine's ``RunStore``.
"""

from .repository import SqlRunStore, open_store

__all__ = ["SqlRunStore", "open_store"]
