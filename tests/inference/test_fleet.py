"""The fleet of served deployments, over a real deployment store (SQLite) and scripted engines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from aimi.db.database import Database, sqlite_url
from aimi.engines.base import ChatModel, Conversation
from aimi.errors import EngineUnavailable
from aimi.inference.chat import ChatRequest, Message
from aimi.inference.fleet import Fleet
from aimi.platform.catalog import Catalog, Offer
from aimi.platform.deployments import Deployment, DeploymentStore
from aimi.platform.keys import KeyStore
from aimi.safety.base import Category
from aimi.safety.judge import register_judge
from aimi.safety.policy import SafetyPolicy
from aimi.safety.registry import FilterRegistry, Filters
from tests.fakes import SelfTemplatingEngine

pytestmark = pytest.mark.anyio

UPSTREAM = "http://upstream.test:8000"


class FlakyUpstream(SelfTemplatingEngine):
    """An engine for a server that may be down when it is started."""

    def __init__(self, down: bool) -> None:
        super().__init__()
        self.down = down

    async def start(self) -> None:
        if self.down:
            raise EngineUnavailable("the upstream server cannot be reached (connection refused)")
        await super().start()


class Factory:
    def __init__(self) -> None:
        self.down = True
        self.built: list[FlakyUpstream] = []

    def __call__(self, source: str, offer: Offer) -> ChatModel:
        self.built.append(FlakyUpstream(self.down))
        return self.built[-1]


def no_filters() -> Filters:
    return [], []


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeploymentStore]:
    db = Database(sqlite_url(tmp_path))
    db.migrate()
    catalog = Catalog(db)
    catalog.seed()
    yield DeploymentStore(db, catalog, KeyStore(db))
    db.close()


async def test_an_engine_that_templates_itself_is_served_without_a_prompt_renderer(
    store: DeploymentStore,
) -> None:
    store.create(project="p", model="Mistral-Small", name="small", source=UPSTREAM)
    factory = Factory()
    factory.down = False
    fleet = Fleet(store=store, engine_factory=factory, safety_filters=no_filters)
    await fleet.reconcile()
    served = await fleet.get("small")
    assert served.service.renderer is None
    result = await served.service.complete(ChatRequest(messages=(Message("user", "hi"),)))
    assert result.text == "Hello world!"
    assert isinstance(factory.built[0].requests[0], Conversation)
    await fleet.stop()


async def test_a_deployment_whose_server_is_down_is_503_and_retried_by_the_sync_only(
    store: DeploymentStore,
) -> None:
    store.create(project="p", model="Mistral-Small", name="small", source=UPSTREAM)
    factory = Factory()
    fleet = Fleet(store=store, engine_factory=factory, safety_filters=no_filters)
    await fleet.reconcile()
    for _ in range(3):
        with pytest.raises(
            EngineUnavailable, match="'small' cannot be served: the upstream server cannot be"
        ):
            await fleet.get("small")
    assert len(factory.built) == 1  # requests in between do not hammer the server
    factory.down = False
    fleet.sync_s = 0.0
    served = await fleet.get("small")  # the interval is over: tried again, and served
    assert served.deployment.name == "small"
    assert len(factory.built) == 2
    await fleet.stop()


class FailingList(DeploymentStore):
    """A store whose database goes away after the first read."""

    def __init__(self, inner: DeploymentStore) -> None:
        self.__dict__.update(inner.__dict__)
        self.reads = 0
        self.down = False

    def list(self, project: str | None = None) -> list[Deployment]:
        self.reads += 1
        if self.down:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return super().list(project)


async def test_a_background_re_read_that_fails_is_logged_backs_off_and_clears_when_it_works(
    store: DeploymentStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.create(project="p", model="Mistral-Small", name="small", source=UPSTREAM)
    failing = FailingList(store)
    factory = Factory()
    factory.down = False
    fleet = Fleet(store=failing, engine_factory=factory, safety_filters=no_filters)
    await fleet.reconcile()
    failing.down = True
    fleet.sync_s = 0.0
    with caplog.at_level("WARNING", logger="aimi.inference"):
        await fleet.get("small")  # still served from what was read; a re-read starts behind it
        await asyncio.sleep(0.05)
    assert fleet.sync_error is not None and "could not be read" in fleet.sync_error
    assert "could not be read" in caplog.text
    reads = failing.reads
    await fleet.get("small")
    await asyncio.sleep(0.05)
    assert failing.reads == reads  # backing off: not read again at once
    failing.down = False
    fleet._synced = 0.0  # the back-off is over
    await fleet.get("small")
    await asyncio.sleep(0.05)
    assert fleet.sync_error is None
    await fleet.stop()


async def test_a_policy_that_names_a_judge_gets_the_model_judge_from_the_registry_asking_that_deployment(
    store: DeploymentStore,
) -> None:
    verdict = (
        b'{"hate": "safe", "sexual": "safe", "violence": "high", "self_harm": "safe", "jailbreak": false}'
    )
    engines = {"guarded": SelfTemplatingEngine(), "judge": SelfTemplatingEngine([verdict])}
    store.create(project="p", model="Mistral-Small", name="guarded", source=UPSTREAM)
    store.create(project="p", model="Mistral-Large", name="judge", source=UPSTREAM + "/judge")
    store.set_safety("guarded", SafetyPolicy(judge="judge"))

    def factory(source: str, offer: Offer) -> ChatModel:
        return engines["judge" if source.endswith("/judge") else "guarded"]

    registry = FilterRegistry()
    registry.apply(register_judge)  # the judge, and no filter that loads weights
    fleet = Fleet(store=store, engine_factory=factory, safety_registry=lambda: registry)
    await fleet.reconcile()
    guarded, judge = await fleet.get("guarded"), await fleet.get("judge")
    assert guarded.service.safety is not None and judge.service.safety is not None
    assert [f.name for f in guarded.service.safety.input_filters] == ["model-judge"]
    assert [f.name for f in guarded.service.safety.output_filters] == ["model-judge"]
    assert judge.service.safety.input_filters == []  # its own policy names no judge

    decision = await guarded.service.safety.check_input("a text to rate")
    assert decision.filtered and decision.categories[Category.VIOLENCE].filters == ("model-judge",)
    asked = engines["judge"].requests[-1]
    assert "a text to rate" in asked.messages[-1]["content"]  # the judge deployment was asked
    assert asked.response_format is not None  # under the verdict's schema

    store.set_safety("guarded", SafetyPolicy())  # the judge is dropped with the next re-read
    await fleet.reconcile()
    assert [f.name for f in (await fleet.get("guarded")).service.safety.input_filters] == []  # type: ignore[union-attr]
    await fleet.stop()
