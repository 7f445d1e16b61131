"""The composition root: `create_app(settings)` builds every service and wires the routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import aimi
from aimi.api import errors, management, metrics, openapi, routes
from aimi.db.database import Database, sqlite_url
from aimi.engines.base import ChatModel
from aimi.engines.registry import EngineRegistry, engine_registry
from aimi.inference.fleet import EngineFactory, Filters, Fleet, load_offline_filters
from aimi.platform.catalog import Catalog
from aimi.platform.deployments import DeploymentStore
from aimi.platform.inflight import InFlight
from aimi.platform.keys import IssuedKey, KeyStore
from aimi.platform.quickstart import ServeTarget, ensure_served
from aimi.platform.quotas import MemoryQuotaStore, QuotaStore, RedisQuotaStore
from aimi.platform.usage import UsageLedger
from aimi.settings import Settings
from aimi.web import portal

log = logging.getLogger("aimi")


@dataclass
class Platform:
    """The platform services, built once per app."""

    db: Database
    catalog: Catalog
    keys: KeyStore
    deployments: DeploymentStore
    ledger: UsageLedger
    quotas: QuotaStore
    inflight: InFlight
    """Keeps the requests this process serves in the ledger while they run (started by the server)."""


def open_platform(settings: Settings, sources: EngineRegistry | None = None) -> Platform:
    """Open (and migrate) the database and build the services on it. Also used by the CLI.
    `sources`: the engine registry that judges deployments' sources (default: built-ins and plug-ins)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url or sqlite_url(settings.data_dir))
    db.migrate()
    catalog = Catalog(db)
    catalog.seed()
    keys = KeyStore(db)
    quotas: QuotaStore = RedisQuotaStore(settings.redis_url) if settings.redis_url else MemoryQuotaStore()
    ledger = UsageLedger(db)
    inflight = InFlight(
        ledger,
        quotas,
        interval_s=settings.ledger_progress_interval_s,
        stale_after_s=settings.ledger_stale_after_s,
    )
    deployments = DeploymentStore(db, catalog, keys, sources=sources)
    return Platform(db, catalog, keys, deployments, ledger, quotas, inflight)


@dataclass(frozen=True)
class Started:
    """What the banner shows once the server is up."""

    target: ServeTarget | None
    admin_key: IssuedKey | None


def create_app(
    settings: Settings,
    *,
    engine: ChatModel | None = None,
    engines: EngineRegistry | None = None,
    on_ready: Callable[[FastAPI, Started], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    safety_filters: Callable[[], Filters] = load_offline_filters,
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
        )
        await fleet.reconcile()
        app.state.platform = platform
        app.state.fleet = fleet
        app.state.metrics = metrics.registry_for(fleet)

        def begin_shutdown() -> asyncio.Future[None]:
            """Not ready from now on; new requests get 503; running answers get the grace."""
            app.state.ready = False
            app.state.draining = True
            return asyncio.ensure_future(fleet.stop())

        app.state.begin_shutdown = begin_shutdown
        app.state.ready = True
        if on_ready is not None:
            on_ready(app, Started(target, admin))
        try:
            yield
        finally:
            app.state.ready = False
            await fleet.stop()
            await platform.inflight.stop()
            await platform.quotas.close()
            platform.db.close()

    app = FastAPI(
        title="aimi",
        version=aimi.__version__,
        description="The Azure AI Model Inference API and Mistral's chat API, self-hosted, with a "
        "platform around them: model catalog, deployments, keys, quotas and a usage ledger.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.ready = False
    app.state.draining = False
    app.state.begin_shutdown = lambda: None  # before start-up there is nothing to drain
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
    async def readyz(request: Request) -> JSONResponse:
        ready = bool(request.app.state.ready)
        status = "ready" if ready else "draining" if request.app.state.draining else "starting"
        trouble = request.app.state.fleet.sync_error if ready else None
        if trouble is not None:
            return JSONResponse({"status": "degraded", "reason": trouble}, status_code=503)
        return JSONResponse({"status": status}, status_code=200 if ready else 503)

    return app
