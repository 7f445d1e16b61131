"""Plug-ins found through entry points, with the engine of docs/plugins.md installed as a
distribution and serving a deployment."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from aimi.db.database import Database, sqlite_url
from aimi.engines.registry import engine_registry
from aimi.errors import InvalidRequest
from aimi.inference.chat import ChatRequest, Message
from aimi.inference.fleet import Fleet
from aimi.platform.catalog import Catalog
from aimi.platform.deployments import DeploymentStore
from aimi.platform.keys import KeyStore
from aimi.plugins import Registrations
from aimi.safety.registry import Filters
from aimi.settings import Settings
from tests.distributions import install

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).parent.parent / "docs" / "plugins.md"
SMOLLM2 = "SmolLM2-135M-Instruct"


def echo_plugin() -> str:
    """The engine plug-in exactly as docs/plugins.md writes it."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    return next(b for b in blocks if "class EchoEngine" in b)


def no_filters() -> Filters:
    return [], []


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    db = Database(sqlite_url(tmp_path))
    db.migrate()
    Catalog(db).seed()
    yield db
    db.close()


async def test_the_engine_plug_in_of_the_docs_validates_its_sources_and_serves_a_deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: Database
) -> None:
    install(
        monkeypatch,
        tmp_path / "site",
        "aimi_echo",
        echo_plugin(),
        {"aimi.engines": {"echo": "aimi_echo:register"}},
    )
    registry = engine_registry()
    assert registry.kinds[0] == "echo"  # asked before the built-in kinds
    catalog = Catalog(store)
    deployments = DeploymentStore(store, catalog, KeyStore(store), sources=registry)
    deployments.create(project="p", model=SMOLLM2, name="echo", source="echo:hi")
    fleet = Fleet(
        store=deployments,
        engine_factory=registry.loader(Settings(data_dir=tmp_path)),
        safety_filters=no_filters,
    )
    await fleet.reconcile()
    served = await fleet.get("echo")
    assert served.service.renderer is None  # a chat engine templates itself
    result = await served.service.complete(ChatRequest(messages=(Message("user", "hello plug-in world"),)))
    assert (result.text, result.finish_reason) == ("hello plug-in world", "stop")
    assert served.service.engine.stats().requests == 1
    await fleet.stop()


def test_without_the_plug_in_its_sources_are_not_taken_for_anything_else(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="neither a file on this machine nor an http"):
        engine_registry().check("echo:hi")


def test_a_plug_in_that_fails_to_load_is_logged_and_left_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install(
        monkeypatch,
        tmp_path / "site",
        "aimi_broken",
        "raise ImportError('needs a GPU')\n",
        {"aimi.engines": {"broken": "aimi_broken:register"}},
    )
    with caplog.at_level(logging.ERROR, logger="aimi.plugins"):
        registry = engine_registry()
    assert registry.kinds == ["embedded", "url", "gguf"]
    assert "the plug-in broken (aimi_broken:register, group aimi.engines) failed to load" in caplog.text


def test_a_registration_reached_twice_runs_once() -> None:
    ran: list[object] = []
    registrations = Registrations()
    registrations.apply(ran.append, "registry")
    registrations.apply(ran.append, "registry")
    assert ran == ["registry"]
