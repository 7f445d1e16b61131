"""The portal's JSON routes under `/portal/api/`: the management API's own handlers (the same rules,
the same messages), behind the portal session and its CSRF token instead of the admin key header;
plus what only a browser page needs: a live check of a new deployment name, a playground token scoped
to one deployment, the "View code" programs, and the engines' live load."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from aimi.api import management
from aimi.api.services import services
from aimi.errors import AimiError, InvalidRequest
from aimi.platform.keys import TOKEN_TTL_S
from aimi.web import snippets
from aimi.web.sessions import PortalSession, SessionStore, requirer


class NameCheck(BaseModel):
    name: str
    ok: bool
    message: str | None
    endpoint: str


class TokenOut(BaseModel):
    token: str
    """Send it as `api-key` (or `Authorization: Bearer`) to this deployment's inference routes."""
    deployment: str
    expires_in: int


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str
    body: dict[str, Any]


class LoadOut(BaseModel):
    deployment: str
    source: str
    running: int
    waiting: int
    slots: int
    requests: int
    generated_tokens: int
    at: float
    """Seconds on the server's monotonic clock: tokens/s is the change of `generated_tokens` over it."""


def router(sessions: SessionStore) -> APIRouter:
    r = APIRouter(prefix="/portal/api", include_in_schema=False, dependencies=[Depends(requirer(sessions))])
    # The management API's handlers, as they are.
    r.add_api_route("/models", management.list_models, methods=["GET"])
    r.add_api_route("/deployments", management.list_deployments, methods=["GET"])
    r.add_api_route("/deployments", management.create_deployment, methods=["POST"], status_code=201)
    r.add_api_route("/deployments/{name}", management.show_deployment, methods=["GET"])
    r.add_api_route("/deployments/{name}", management.update_deployment, methods=["PATCH"])
    r.add_api_route("/deployments/{name}", management.delete_deployment, methods=["DELETE"], status_code=204)
    r.add_api_route("/deployments/{name}/keys", management.show_keys, methods=["GET"])
    r.add_api_route(
        "/deployments/{name}/keys/{which}/regenerate", management.regenerate_key, methods=["POST"]
    )
    r.add_api_route("/deployments/{name}/safety", management.show_safety, methods=["GET"])
    r.add_api_route("/deployments/{name}/safety", management.set_safety, methods=["PUT"])
    r.add_api_route("/usage", management.usage, methods=["GET"])
    # What only the portal's pages need.
    r.add_api_route("/names/{name}", check_name, methods=["GET"])
    r.add_api_route("/deployments/{name}/token", mint_token, methods=["POST"])
    r.add_api_route("/code", code, methods=["POST"])
    r.add_api_route("/load", load, methods=["GET"])
    return r


def _endpoint(request: Request, name: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/deployments/{name}"


async def check_name(request: Request, name: str) -> NameCheck:
    """What creating a deployment under `name` would say about the name, before it is tried."""
    try:
        await asyncio.to_thread(services(request).platform.deployments.check_new_name, name)
    except AimiError as exc:
        return NameCheck(name=name, ok=False, message=exc.message, endpoint=_endpoint(request, name))
    return NameCheck(name=name, ok=True, message=None, endpoint=_endpoint(request, name))


async def mint_token(request: Request, name: str) -> TokenOut:
    session: PortalSession = request.state.portal_session
    keys = services(request).platform.keys
    minted = await asyncio.to_thread(lambda: keys.mint_token(name, owner=session.id))
    return TokenOut(token=minted.token, deployment=name, expires_in=TOKEN_TTL_S)


async def code(request: Request, body: CodeIn) -> dict[str, str]:
    await asyncio.to_thread(services(request).platform.deployments.get, body.deployment)
    if not isinstance(body.body.get("messages"), list):
        raise InvalidRequest("The request needs its 'messages'.", param="messages")
    return snippets.snippets(_endpoint(request, body.deployment), body.deployment, body.body)


async def load(request: Request) -> list[LoadOut]:
    """Running and waiting requests per deployment, from its engine (deployments of one source share
    an engine, and so these figures)."""
    now = time.monotonic()
    out = []
    for served in services(request).fleet.all():
        stats = served.service.engine.stats()
        out.append(
            LoadOut(
                deployment=served.deployment.name,
                source=served.deployment.source,
                running=stats.running,
                waiting=stats.waiting,
                slots=stats.slots,
                requests=stats.requests,
                generated_tokens=stats.generated_tokens,
                at=now,
            )
        )
    return sorted(out, key=lambda x: x.deployment)
