"""The database fixtures, one test per backend: SQLite and PostgreSQL (see `tests/databases.py`), and
an app with an admin key for the tests that need both kinds of key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aimi.api.app import create_app
from aimi.safety.registry import Filters
from aimi.settings import Settings
from tests.conftest import TEST_KEY
from tests.databases import backend, database, database_url
from tests.fakes import ScriptedEngine

__all__ = ["admin_http", "backend", "database", "database_url"]

ADMIN_KEY = "A" * 32


def no_filters() -> Filters:
    return [], []


@pytest.fixture
async def admin_http(engine: ScriptedEngine, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The deployment `fake` (key TEST_KEY) and the admin key ADMIN_KEY, on SQLite; a client with no
    key of its own: each call says which key it carries."""
    settings = Settings(api_key=TEST_KEY, name="fake", admin_key=ADMIN_KEY, data_dir=tmp_path, safety=False)
    app = create_app(settings, engine=engine, safety_filters=no_filters)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aimi.test") as c:
            yield c
