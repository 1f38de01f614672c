"""Persistence: SQLAlchemy 2 models, the async engine/session factory and Alembic migrations.

SQLite (WAL) is the embedded default; PostgreSQL is used when the database URL says so. The schema is only ever
changed by migrations in ``migrations/versions``; ``migrate.upgrade`` runs them on ``dso init`` and ``dso serve``.
"""

from server.store.db import Store, create_store

__all__ = ["Store", "create_store"]
