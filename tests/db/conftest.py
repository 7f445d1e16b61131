"""The database fixtures, one test per backend: SQLite and PostgreSQL (see `tests/databases.py`)."""

from tests.databases import backend, database, database_url

__all__ = ["backend", "database", "database_url"]
