"""The two databases the suite runs against: a SQLite file, and PostgreSQL when AIMI_TEST_DATABASE_URL
names a server (`scripts/services.sh` starts one). Every test gets an empty database: a new file, or a
new PostgreSQL schema (its connections put it first on their `search_path`), dropped afterwards.

Test directories that need them import the fixtures into their `conftest.py`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from aimi.db.database import Database, sqlite_url

POSTGRES_URL = os.environ.get("AIMI_TEST_DATABASE_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="AIMI_TEST_DATABASE_URL not set: run scripts/services.sh"
)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=needs_postgres),
]


def postgres_url(schema: str, **settings: str) -> str:
    """AIMI_TEST_DATABASE_URL with `schema` as the search path (and other session settings)."""
    assert POSTGRES_URL is not None
    options = " ".join(f"-c{name}={value}" for name, value in {"search_path": schema, **settings}.items())
    return (
        make_url(POSTGRES_URL).update_query_dict({"options": options}).render_as_string(hide_password=False)
    )


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A new, empty schema on the test server (dropped afterwards, with all it holds); yields its name."""
    assert POSTGRES_URL is not None
    schema = f"aimi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield schema
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@contextmanager
def empty_database(backend: str, data_dir: Path) -> Iterator[str]:
    """The URL of an empty database: `aimi.db` in `data_dir` (as `--data-dir` uses it), or a schema."""
    if backend == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        yield sqlite_url(data_dir)
        return
    with fresh_postgres_schema() as schema:
        yield postgres_url(schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend; SQLite's file is where `--data-dir tmp_path` looks."""
    with empty_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated, empty database."""
    db = Database(database_url)
    db.migrate()
    yield db
    db.close()
