"""The deployments this process serves: one engine per model source (shared by the deployments that
use it) and one chat service per deployment, kept in step with the deployment store.

Deployments are read at start and again whenever a request names one this process does not know yet,
so a deployment created while the server runs (through the API or the CLI) is served at once; other
changes made beside the server (a safety policy, quotas, a deletion) are picked up by a re-read in the
background at most every `sync_s` seconds while requests arrive. A deployment whose engine could not
load (a server it forwards to that is down) is tried again by that re-read too, not by every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aimi.engines.base import ChatModel, Sampling
from aimi.errors import AimiError, EngineUnavailable, NotFound
from aimi.inference.chat import ChatRequest, Message, ResponseFormat
from aimi.inference.pipeline import AutoToolChoice, ChatService
from aimi.inference.prompts import renderer_for
from aimi.platform.catalog import Offer
from aimi.platform.deployments import Deployment, DeploymentStore
from aimi.safety import SafetyService
from aimi.safety.registry import FilterRegistry, Filters, ForDeployment, filter_registry

log = logging.getLogger("aimi.inference")

EngineFactory = Callable[[str, Offer], ChatModel]
"""An engine for a source (the engine registry's `loader`)."""
SYNC_S = 2.0
"""The default of `Fleet(sync_s=...)`."""


def load_offline_filters(ensemble: str = "classic") -> Filters:
    """The registered filters: the built-in ones of `ensemble` (their models load once, in a few
    seconds) and those of installed plug-ins."""
    return filter_registry(ensemble=ensemble).filters()


def _no_registry() -> FilterRegistry:
    return FilterRegistry()


@dataclass
class Served:
    deployment: Deployment
    offer: Offer
    service: ChatService


@dataclass
class _Loaded:
    engine: ChatModel
    users: int = 0


class Fleet:
    def __init__(
        self,
        *,
        store: DeploymentStore,
        engine_factory: EngineFactory,
        auto_tool_choice: AutoToolChoice = "model",
        shutdown_grace_s: float = 0.0,
        safety_filters: Callable[[], Filters] | None = None,
        safety_registry: Callable[[], FilterRegistry] | None = None,
        sync_s: float = SYNC_S,
    ) -> None:
        """`safety_registry`: the content-safety filters, built once for the whole process and made
        for each deployment (the model judge); default: the classic ensemble, the judge and
        plug-ins. `safety_filters` (for tests) replaces the filters built once.
        `sync_s`: the least time between two background re-reads of the deployments."""
        self._store = store
        self.sync_s = sync_s
        self._make_registry = safety_registry or (
            _no_registry if safety_filters is not None else filter_registry
        )
        self._registry: FilterRegistry | None = None
        self._load_filters = safety_filters
        self._filters: Filters | None = None
        self._factory = engine_factory
        self._auto_tool_choice = auto_tool_choice
        self._grace = shutdown_grace_s
        self._served: dict[str, Served] = {}
        self._failed: dict[str, str] = {}
        """Deployments whose engine could not be loaded, and why (answered with 503, not 404)."""
        self._engines: dict[str, _Loaded] = {}
        self._lock = asyncio.Lock()
        self._stopping: asyncio.Future[None] | None = None
        self._synced = time.monotonic()
        self._sync: asyncio.Task[None] | None = None
        self._sync_failures = 0
        self.sync_error: str | None = None
        """Why the last background re-read of the deployments failed (the database is away); None
        once one succeeds. `/readyz` reports it."""

    def all(self) -> list[Served]:
        return list(self._served.values())

    def engines(self) -> list[ChatModel]:
        return [loaded.engine for loaded in self._engines.values()]

    async def get(self, name: str) -> Served:
        if self._stopping is not None:
            raise EngineUnavailable("The server is shutting down; try again in a moment.", retry_after=2)
        if time.monotonic() - self._synced > self.sync_s and (self._sync is None or self._sync.done()):
            self._sync = asyncio.ensure_future(self._sync_in_background())
        served = self._served.get(name)
        if served is None and name in self._failed and time.monotonic() - self._synced <= self.sync_s:
            raise self._unavailable(name)  # tried a moment ago; the background sync tries again
        if served is None:
            async with self._lock:  # a reconcile in flight may be loading it
                served = self._served.get(name)
        if served is None:
            try:
                await asyncio.to_thread(self._store.get, name)
            except NotFound:
                pass
            else:
                await self.reconcile()
                served = self._served.get(name)
        if served is None and name in self._failed:
            raise self._unavailable(name)
        if served is None:
            raise NotFound(f"Deployment '{name}' not found.")
        return served

    async def _sync_in_background(self) -> None:
        """A re-read that nobody awaits: a failure is logged and remembered, and the next re-read
        waits longer each time (up to a minute), so a database that is down is not hammered."""
        try:
            await self.reconcile()
        except Exception as exc:
            self._sync_failures += 1
            backoff = min(60.0, 2.0**self._sync_failures)
            self._synced = time.monotonic() + backoff - self.sync_s
            self.sync_error = f"the deployments could not be read ({type(exc).__name__}: {exc})"
            log.warning("%s; trying again in %.0f s", self.sync_error, backoff)
        else:
            self._sync_failures = 0
            self.sync_error = None

    def _unavailable(self, name: str) -> EngineUnavailable:
        return EngineUnavailable(
            f"Deployment '{name}' cannot be served: {self._failed[name]}", retry_after=60
        )

    async def reconcile(self) -> None:
        """Load what the store has and this process does not; let go of what it no longer has."""
        async with self._lock:
            self._synced = time.monotonic()
            wanted = {d.name: d for d in await asyncio.to_thread(self._store.list)}
            self._failed = {n: why for n, why in self._failed.items() if n in wanted}
            for name in [n for n in self._served if n not in wanted]:
                await self._unload(self._served.pop(name))
            for name, deployment in wanted.items():
                current = self._served.get(name)
                if current is not None and current.deployment.source == deployment.source:
                    if current.deployment.safety != deployment.safety:
                        current.service.safety = await self._safety(deployment)
                    current.deployment = deployment  # quotas may have changed too
                    continue
                if current is not None:
                    await self._unload(self._served.pop(name))
                try:
                    self._served[name] = await self._load(deployment)
                    self._failed.pop(name, None)
                except AimiError as exc:
                    self._failed[name] = exc.message
                    log.error(
                        "could not load deployment %s (source %s): %s", name, deployment.source, exc.message
                    )
                except Exception as exc:
                    self._failed[name] = "its engine failed to load (see the server log)"
                    log.exception(
                        "could not load deployment %s (source %s): %s", name, deployment.source, exc
                    )

    async def _load(self, deployment: Deployment) -> Served:
        offer = await asyncio.to_thread(self._store.offer, deployment)
        loaded = self._engines.get(deployment.source)
        if loaded is None:
            engine = self._factory(deployment.source, offer)
            await engine.start()
            loaded = self._engines[deployment.source] = _Loaded(engine)
        loaded.users += 1
        engine = loaded.engine
        renderer = None
        if engine.port == "token":
            renderer = await asyncio.to_thread(renderer_for, engine.info, engine.tokenize)
        service = ChatService(
            engine=engine,
            renderer=renderer,
            auto_tool_choice=self._auto_tool_choice,
            safety=await self._safety(deployment),
        )
        log.info("serving deployment %s (%s from %s)", deployment.name, offer.name, deployment.source)
        return Served(deployment, offer, service)

    async def _safety(self, deployment: Deployment) -> SafetyService | None:
        """The deployment's content-safety service; None when its policy turns safety off. The
        filters built once are shared; those made for the deployment (the model judge) are given
        its policy and a way to ask another deployment."""
        policy = deployment.safety
        if not policy.enabled:
            return None
        if self._registry is None:
            self._registry = await asyncio.to_thread(self._make_registry)
        if self._filters is None:
            self._filters = await asyncio.to_thread(self._load_filters or self._registry.filters)
        inputs, outputs = self._filters
        own_inputs, own_outputs = self._registry.filters_for(ForDeployment(policy, self.ask))
        return SafetyService(
            policy, input_filters=[*inputs, *own_inputs], output_filters=[*outputs, *own_outputs]
        )

    async def ask(self, deployment: str, messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
        """Ask a chat deployment for an answer constrained by a JSON schema (the model judge's
        question): greedy, at most 256 tokens, through that deployment's own pipeline."""
        served = await self.get(deployment)
        request = ChatRequest(
            messages=tuple(Message(m["role"], m["content"]) for m in messages),  # type: ignore[arg-type]
            sampling=Sampling(temperature=0),
            max_tokens=256,
            response_format=ResponseFormat("json_schema", schema=schema),
        )
        return (await served.service.complete(request)).text

    async def _unload(self, served: Served) -> None:
        loaded = self._engines.get(served.deployment.source)
        if loaded is None:
            return
        loaded.users -= 1
        if loaded.users <= 0:
            del self._engines[served.deployment.source]
            await loaded.engine.stop(self._grace)

    async def stop(self) -> None:
        """Drain every engine (running answers get `shutdown_grace_s`); safe to call twice."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        async with self._lock:
            engines = [loaded.engine for loaded in self._engines.values()]
            self._engines.clear()
            self._served.clear()
        await asyncio.gather(*(engine.stop(self._grace) for engine in engines))
