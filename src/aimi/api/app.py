"""The composition root: `create_app(settings)` builds every service and wires the routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import aimi
from aimi.api import errors, metrics, routes
from aimi.engines.base import Engine
from aimi.engines.llamacpp import LlamaCppEngine
from aimi.engines.llamacpp.embedded import EMBEDDED_MODEL_NAME, EMBEDDED_MODEL_PROVIDER, embedded_model_path
from aimi.inference.pipeline import ChatService
from aimi.inference.prompts import renderer_for
from aimi.platform.deployments import Deployment, Deployments, slug
from aimi.settings import Settings

log = logging.getLogger("aimi")


def build_engine(settings: Settings, *, on_progress: Callable[[float], None] | None = None) -> Engine:
    embedded = settings.model is None
    return LlamaCppEngine(
        settings.model or embedded_model_path(),
        name=EMBEDDED_MODEL_NAME if embedded else None,
        provider=EMBEDDED_MODEL_PROVIDER if embedded else None,
        context_size=settings.context_size,
        slots=settings.parallel,
        threads=settings.threads,
        max_waiting=settings.max_queue,
        on_progress=on_progress,
    )


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    on_ready: Callable[[FastAPI], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> FastAPI:
    """The ASGI app serving one deployment of one model; `settings.api_key` is its key."""
    if not settings.api_key:
        raise ValueError("settings.api_key must be set (the CLI generates one)")
    engine = engine or build_engine(settings, on_progress=on_progress)
    deployments = Deployments()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        info = engine.info
        service = ChatService(
            engine=engine,
            renderer=renderer_for(info, engine.tokenize),
            auto_tool_choice=settings.tool_choice_auto,
        )
        deployment = Deployment(
            name=settings.name or slug(info.name),
            model_name=info.name,
            provider=info.provider,
            service=service,
        )
        deployments.add(deployment, keys=[settings.api_key or ""])
        app.state.ready = True
        if on_ready is not None:
            on_ready(app)
        try:
            yield
        finally:
            app.state.ready = False
            await engine.stop(settings.shutdown_grace_s)

    app = FastAPI(
        title="aimi",
        version=aimi.__version__,
        description="The Azure AI Model Inference API and Mistral's chat API, self-hosted.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.deployments = deployments
    app.state.engine = engine
    app.state.ready = False
    app.state.metrics = metrics.registry_for(deployments)
    app.state.begin_shutdown = lambda: asyncio.ensure_future(engine.stop(settings.shutdown_grace_s))
    errors.install(app)
    for base in routes.BASES:
        app.include_router(routes.router(), prefix=base, tags=["inference"])

    app.add_api_route(
        "/metrics", metrics.metrics, methods=["GET"], tags=["operations"], include_in_schema=False
    )

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        ready = bool(request.app.state.ready)
        return JSONResponse({"status": "ready" if ready else "starting"}, status_code=200 if ready else 503)

    return app
