"""Persistence: SQLAlchemy 2 tables, the database handle, Alembic migrations."""
