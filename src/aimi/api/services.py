"""What the HTTP layer works with, typed: one `Services` object per app, made by `create_app` and
completed by its start-up, read through `services(request)` (never as loose `app.state` attributes)."""

from __future__ import annotations

import asyncio
from typing import cast

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry

from aimi.errors import EngineUnavailable
from aimi.inference.fleet import Fleet
from aimi.platform.services import Platform
from aimi.settings import Settings


class Services:
    """The settings, and once the app has started its platform, fleet and metrics; whether it is
    ready, and how to drain it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._platform: Platform | None = None
        self._fleet: Fleet | None = None
        self._metrics: CollectorRegistry | None = None
        self.ready = False
        self.draining = False
        self._drain: asyncio.Future[None] | None = None

    def started(self, platform: Platform, fleet: Fleet, metrics: CollectorRegistry) -> None:
        self._platform, self._fleet, self._metrics = platform, fleet, metrics
        self.ready = True

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            raise EngineUnavailable("The server is starting; try again in a moment.", retry_after=2)
        return self._platform

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            raise EngineUnavailable("The server is starting; try again in a moment.", retry_after=2)
        return self._fleet

    @property
    def metrics(self) -> CollectorRegistry:
        if self._metrics is None:
            raise EngineUnavailable("The server is starting; try again in a moment.", retry_after=2)
        return self._metrics

    def begin_shutdown(self) -> asyncio.Future[None] | None:
        """Not ready from now on; new requests get 503; running answers get the grace. Before
        start-up there is nothing to drain (None)."""
        if self._fleet is None:
            return None
        self.ready = False
        self.draining = True
        if self._drain is None:
            self._drain = asyncio.ensure_future(self._fleet.stop())
        return self._drain


def services_of(app: FastAPI) -> Services:
    return cast(Services, app.state.services)


def services(request: Request) -> Services:
    """The services of the app serving `request`."""
    return services_of(request.app)
