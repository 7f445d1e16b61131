"""The portal in process (ASGI) over a scripted engine: an app with the admin key, and a browser-like
client that signs in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from aimi.api.app import create_app
from aimi.safety.registry import Filters
from aimi.settings import Settings
from tests.conftest import TEST_KEY
from tests.databases import backend, database, database_url
from tests.fakes import ScriptedEngine
from tests.platform.conftest import catalog, deployments, keys

__all__ = ["backend", "catalog", "database", "database_url", "deployments", "keys"]

ADMIN_KEY = "A" * 32
BASE = "http://aimi.test"


def no_filters() -> Filters:
    return [], []


@pytest.fixture
async def app(engine: ScriptedEngine, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """Deployment `fake` (key TEST_KEY) and the admin key ADMIN_KEY, on SQLite."""
    settings = Settings(
        api_key=TEST_KEY, name="fake", admin_key=ADMIN_KEY, data_dir=tmp_path, redis_url=None, safety=False
    )
    application = create_app(settings, engine=engine, safety_filters=no_filters)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies, as a browser does; signed out."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert found, html
    return found.group(1)


async def sign_in(
    http: httpx.AsyncClient, key: str = ADMIN_KEY, next: str = "/portal/catalog"
) -> httpx.Response:
    form = await http.get("/portal/login", params={"next": next})
    token = csrf_of(form.text)
    return await http.post(
        "/portal/login", data={"key": key, "csrf_token": token, "next": next}, follow_redirects=False
    )


@pytest.fixture
async def portal(http: httpx.AsyncClient) -> httpx.AsyncClient:
    """Signed in; `portal.headers` carry the session's CSRF token."""
    response = await sign_in(http)
    assert response.status_code == 303, response.text
    page = await http.get("/portal/catalog")
    http.headers["x-csrf-token"] = csrf_of(page.text)
    return http
