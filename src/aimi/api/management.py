"""The management API under `/api/` (admin key): catalog, deployments, keys, usage.
Everything the CLI does, as JSON; documented in `/openapi.json`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response

from aimi.api.auth import key_from
from aimi.api.openapi import errors
from aimi.api.schemas.management import (
    CreatedOut,
    DeploymentIn,
    DeploymentOut,
    DeploymentPatch,
    IssuedKeyOut,
    KeyOut,
    ModelIn,
    ModelOut,
    Period,
    SafetyOut,
    UsageLineOut,
    UsageOut,
)
from aimi.api.services import services
from aimi.errors import InvalidRequest, Unauthorized
from aimi.platform.catalog import Offer
from aimi.platform.deployments import Deployment
from aimi.platform.keys import Which
from aimi.platform.usage import UsageLine, parse_since
from aimi.safety.policy import SafetyPolicy


async def require_admin(request: Request) -> None:
    key = key_from(request.headers)
    if not key or not await asyncio.to_thread(services(request).platform.keys.is_admin, key):
        raise Unauthorized()
    request.state.who = f"api (admin key ending {key[-4:]})"


async def no_nul_in_parameters(request: Request) -> None:
    """A path or query parameter is text the database compares; PostgreSQL cannot hold U+0000."""
    for where, pairs in (
        ("path", request.path_params.items()),
        ("query", request.query_params.multi_items()),
    ):
        for name, value in pairs:
            if "\x00" in str(value):
                raise InvalidRequest(
                    f"Invalid value for {where} parameter '{name}': text must not contain NUL (U+0000).",
                    param=name,
                )


def router() -> APIRouter:
    r = APIRouter(
        dependencies=[Depends(require_admin), Depends(no_nul_in_parameters)],
        responses=errors(400, 401, 404, 409),
    )
    r.add_api_route("/models", list_models, methods=["GET"], summary="The model catalog")
    r.add_api_route(
        "/models", add_model, methods=["POST"], status_code=201, summary="Add a model to the catalog"
    )
    r.add_api_route("/models/{name}", show_model, methods=["GET"], summary="One catalog entry")
    r.add_api_route("/deployments", list_deployments, methods=["GET"], summary="Deployments")
    r.add_api_route(
        "/deployments",
        create_deployment,
        methods=["POST"],
        status_code=201,
        summary="Deploy a catalog model (its name becomes the endpoint URL)",
    )
    r.add_api_route("/deployments/{name}", show_deployment, methods=["GET"], summary="One deployment")
    r.add_api_route(
        "/deployments/{name}",
        delete_deployment,
        methods=["DELETE"],
        status_code=204,
        summary="Delete a deployment",
    )
    r.add_api_route(
        "/deployments/{name}",
        update_deployment,
        methods=["PATCH"],
        summary="Change a deployment's quotas (in force at once; its keys stay)",
    )
    r.add_api_route(
        "/deployments/{name}/keys", show_keys, methods=["GET"], summary="A deployment's keys (hints)"
    )
    r.add_api_route(
        "/deployments/{name}/keys/{which}/regenerate",
        regenerate_key,
        methods=["POST"],
        summary="Replace the primary or the secondary key; the other keeps working",
    )
    r.add_api_route(
        "/deployments/{name}/safety", show_safety, methods=["GET"], summary="The content-safety policy"
    )
    r.add_api_route(
        "/deployments/{name}/safety", set_safety, methods=["PUT"], summary="Replace the content-safety policy"
    )
    r.add_api_route("/usage", usage, methods=["GET"], summary="Requests, tokens and cost, with totals")
    return r


def _model(offer: Offer) -> ModelOut:
    return ModelOut(**{field: getattr(offer, field) for field in ModelOut.model_fields})


def _deployment(request: Request, deployment: Deployment, keys: list[KeyOut] | None = None) -> DeploymentOut:
    base = str(request.base_url).rstrip("/")
    return DeploymentOut(
        name=deployment.name,
        project=deployment.project,
        model=deployment.model,
        source=deployment.source,
        requests_per_minute=deployment.requests_per_minute,
        tokens_per_minute=deployment.tokens_per_minute,
        created_at=deployment.created_at,
        endpoint=f"{base}/deployments/{deployment.name}",
        keys=keys or [],
    )


async def list_models(request: Request) -> list[ModelOut]:
    offers = await asyncio.to_thread(services(request).platform.catalog.list)
    return [_model(o) for o in offers]


async def show_model(request: Request, name: str) -> ModelOut:
    return _model(await asyncio.to_thread(services(request).platform.catalog.get, name))


async def add_model(request: Request, body: ModelIn) -> ModelOut:
    offer = Offer(**body.model_dump())
    return _model(await asyncio.to_thread(services(request).platform.catalog.add, offer))


async def list_deployments(request: Request, project: str | None = None) -> list[DeploymentOut]:
    found = await asyncio.to_thread(services(request).platform.deployments.list, project)
    return [_deployment(request, d) for d in found]


async def create_deployment(request: Request, body: DeploymentIn) -> CreatedOut:
    platform = services(request).platform
    who = getattr(request.state, "who", None)
    created = await asyncio.to_thread(
        lambda: platform.deployments.create(**body.model_dump(), accepted_by=who)
    )
    await services(request).fleet.reconcile()  # served from this response on
    offer = await asyncio.to_thread(platform.catalog.get, created.deployment.model)
    return CreatedOut(
        deployment=_deployment(request, created.deployment),
        keys=[IssuedKeyOut(which=k.which, key=k.key) for k in created.keys],
        terms_accepted=created.terms_accepted,
        terms=offer.terms,
    )


async def show_deployment(request: Request, name: str) -> DeploymentOut:
    platform = services(request).platform
    deployment = await asyncio.to_thread(platform.deployments.get, name)
    keys = await show_keys(request, name)
    return _deployment(request, deployment, keys)


async def update_deployment(request: Request, name: str, body: DeploymentPatch) -> DeploymentOut:
    platform = services(request).platform
    await asyncio.to_thread(lambda: platform.deployments.set_quotas(name, **body.model_dump()))
    await services(request).fleet.reconcile()  # the new limits apply from the next request
    return await show_deployment(request, name)


async def delete_deployment(request: Request, name: str) -> Response:
    await asyncio.to_thread(services(request).platform.deployments.delete, name)
    await services(request).fleet.reconcile()
    return Response(status_code=204)


async def show_keys(request: Request, name: str) -> list[KeyOut]:
    keys = await asyncio.to_thread(services(request).platform.keys.show, name)
    return [KeyOut(id=k.id, which=k.which, hint=k.hint, created_at=k.created_at) for k in keys]


async def regenerate_key(request: Request, name: str, which: Which) -> IssuedKeyOut:
    issued = await asyncio.to_thread(services(request).platform.keys.regenerate, name, which)
    return IssuedKeyOut(which=issued.which, key=issued.key)


def _line(line: UsageLine) -> UsageLineOut:
    return UsageLineOut(
        deployment=line.deployment,
        period=line.period,
        requests=line.requests,
        prompt_tokens=line.prompt_tokens,
        completion_tokens=line.completion_tokens,
        total_tokens=line.total_tokens,
        cost=line.cost,
    )


async def usage(
    request: Request, deployment: str | None = None, since: str | None = None, by: Period | None = None
) -> UsageOut:
    start = parse_since(since) if since else None
    await services(request).platform.inflight.written()  # this server's answers are in the figures
    ledger = services(request).platform.ledger
    lines, total = await asyncio.to_thread(lambda: ledger.summary(deployment=deployment, since=start, by=by))
    return UsageOut(lines=[_line(x) for x in lines], total=_line(total))


async def show_safety(request: Request, name: str) -> SafetyOut:
    deployment = await asyncio.to_thread(services(request).platform.deployments.get, name)
    return SafetyOut.model_validate(deployment.safety.to_json())


async def set_safety(request: Request, name: str, body: SafetyPolicy) -> SafetyOut:
    """E.g. `{"enabled": true, "input": {"hate": "low"}, "output": {"violence": "high"},
    "block_jailbreak": true, "blocklists": [{"name": "legal", "terms": ["lawsuit"], "patterns": []}],
    "judge": "my-mistral"}`; unset fields take the defaults (medium). The body is the policy itself,
    validated as the CLI's and the stored policies are."""
    platform = services(request).platform
    await asyncio.to_thread(platform.deployments.set_safety, name, body)
    await services(request).fleet.reconcile()
    return await show_safety(request, name)
