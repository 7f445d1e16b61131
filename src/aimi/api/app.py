"""The composition root: `create_app(settings)` builds every service and wires the routes."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse

import aimi
from aimi.api import errors, management, metrics, openapi, routes
from aimi.api.services import Services
from aimi.engines.base import ChatModel
from aimi.engines.registry import EngineRegistry, engine_registry
from aimi.inference.fleet import EngineFactory, Fleet
from aimi.platform.keys import IssuedKey
from aimi.platform.quickstart import ServeTarget, ensure_served
from aimi.platform.services import open_platform
from aimi.safety.registry import Filters, filter_registry
from aimi.settings import Settings
from aimi.web import portal

log = logging.getLogger("aimi")


@dataclass(frozen=True)
class Started:
    """What the banner shows once the server is up."""

    target: ServeTarget | None
    admin_key: IssuedKey | None


GIL_SWITCH_S = 0.001
"""How long a thread may hold the GIL while another waits for it, while the app runs. Prompts are
rendered, schemas turned into grammars and grammars compiled on worker threads, beside the engine's
decode thread; at Python's default (5 ms) the event loop could wait on them 20 ms and more between
two chunks of a stream, with three threads taking turns ahead of it; at 1 ms it waits a few."""


def create_app(
    settings: Settings,
    *,
    engine: ChatModel | None = None,
    engines: EngineRegistry | None = None,
    on_ready: Callable[[FastAPI, Started], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    safety_filters: Callable[[], Filters] | None = None,
) -> FastAPI:
    """The ASGI app. `engines`: the engine registry (default: the built-in engines and installed
    plug-ins); `engine` (for tests) serves every deployment instead of the engines by source;
    `safety_filters` (for tests) replaces loading the built-in content-safety filters."""
    registry = engines if engines is not None else engine_registry()
    factory: EngineFactory = (
        (lambda _source, _offer: engine)
        if engine is not None
        else registry.loader(settings, on_progress=on_progress)
    )

    served = Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        switch_s = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_s, GIL_SWITCH_S))
        try:
            async with _serving(app) as started:
                yield started
        finally:
            sys.setswitchinterval(switch_s)

    @asynccontextmanager
    async def _serving(app: FastAPI) -> AsyncIterator[None]:
        platform = await asyncio.to_thread(open_platform, settings, registry)
        await platform.inflight.start()  # closes what a process that died left in progress
        target = None
        if settings.serves_quickstart:
            target = await asyncio.to_thread(
                ensure_served,
                platform.deployments,
                model=settings.model,
                name=settings.name,
                api_key=settings.api_key,
                context_length=settings.context_size,
                safety=settings.safety,
            )
        admin = await asyncio.to_thread(platform.keys.ensure_admin, settings.admin_key)
        fleet = Fleet(
            store=platform.deployments,
            engine_factory=factory,
            auto_tool_choice=settings.tool_choice_auto,
            shutdown_grace_s=settings.shutdown_grace_s,
            safety_filters=safety_filters,
            safety_registry=lambda: filter_registry(ensemble=settings.safety_ensemble),
        )
        await fleet.reconcile()
        served.started(platform, fleet, metrics.registry_for(fleet))
        if on_ready is not None:
            on_ready(app, Started(target, admin))
        try:
            yield
        finally:
            served.ready = False
            await fleet.stop()
            await platform.close()

    app = FastAPI(
        title="aimi",
        version=aimi.__version__,
        description="The Azure AI Model Inference API and Mistral's chat API, self-hosted, with a "
        "platform around them: model catalog, deployments, keys, quotas and a usage ledger.",
        lifespan=lifespan,
    )
    app.state.services = served
    errors.install(app)
    for base in routes.BASES:
        app.include_router(routes.router(), prefix=base, tags=["inference"])
    app.include_router(management.router(), prefix="/api", tags=["management"])
    app.include_router(portal.router(), tags=["portal"])
    app.add_api_route(
        "/metrics", metrics.metrics, methods=["GET"], tags=["operations"], include_in_schema=False
    )
    openapi.install(app)  # completes /openapi.json: path parameters, $defs, keys, error responses

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        ready = served.ready
        status = "ready" if ready else "draining" if served.draining else "starting"
        trouble = served.fleet.sync_error if ready else None
        if trouble is not None:
            return JSONResponse({"status": "degraded", "reason": trouble}, status_code=503)
        return JSONResponse({"status": status}, status_code=200 if ready else 503)

    return app
