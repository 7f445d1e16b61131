"""The inference routes: `GET /info`, `POST /chat/completions` (Azure AI Model Inference) and
`POST /v1/chat/completions` (Mistral-native), mounted at the root, under `/models` and under
`/deployments/{deployment}`."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from aimi.api import convert, parameters, sse
from aimi.api.auth import key_from
from aimi.api.body import read_json_object
from aimi.api.openapi import errors, request_body
from aimi.api.parameters import Policy
from aimi.api.schemas.chat import (
    AZURE_PARAMETERS,
    MISTRAL_PARAMETERS,
    AzureChatCompletionsBody,
    ChatCompletionsBody,
)
from aimi.api.schemas.completions import ChatCompletion, ModelInfo
from aimi.api.schemas.errors import BriefEnvelope, BriefError
from aimi.api.services import services
from aimi.errors import AimiError, NotFound, Unauthorized
from aimi.inference.chat import ChatRequest, ChatResult, Delta
from aimi.inference.fleet import Served
from aimi.inference.pipeline import Answer, ChatService, Meter
from aimi.platform.deployments import NAME_PATTERN
from aimi.platform.keys import Principal
from aimi.platform.metering import DeploymentMeter, QuotaState

log = logging.getLogger("aimi.api")

BASES = ("", "/models", "/deployments/{deployment}")
_DISCONNECT_POLL_S = 0.25
_CHAT_ERRORS = errors(400, 401, 404, 413, 422, 429, 503)
_CHAT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The completion (JSON), or with `stream: true` server-sent events: "
        "`data: <ChatCompletionChunk>` each, then `data: [DONE]`",
        "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ChatCompletionChunk"}}},
    },
    **_CHAT_ERRORS,
}
_POLICY_HEADER = {
    "name": "extra-parameters",
    "in": "header",
    "required": False,
    "description": "What to do with body keys outside the route's fields: refuse them (error), ignore "
    "them (drop), or apply those aimi knows and refuse the others with a 422 (pass-through)",
    "schema": {"type": "string", "enum": ["error", "drop", "pass-through"]},
}


def router() -> APIRouter:
    r = APIRouter()
    r.add_api_route(
        "/info", info, methods=["GET"], responses=errors(401, 404, 503), summary="The deployed model"
    )
    r.add_api_route(
        "/chat/completions",
        chat_completions,
        methods=["POST"],
        openapi_extra=request_body(AzureChatCompletionsBody, parameters=[_POLICY_HEADER]),
        response_model=ChatCompletion,
        responses=_CHAT_ANSWERS,
        summary="Chat completions (Azure AI Model Inference API)",
    )
    r.add_api_route(
        "/v1/chat/completions",
        mistral_chat_completions,
        methods=["POST"],
        openapi_extra=request_body(ChatCompletionsBody, parameters=[_POLICY_HEADER]),
        response_model=ChatCompletion,
        responses=_CHAT_ANSWERS,
        summary="Chat completions (Mistral-native API)",
    )
    return r


async def deployment_for(request: Request) -> tuple[Served, Principal]:
    """The key chooses the deployment at the root; the URL (or the routing header) names it under a
    base, and the key must then be one of that deployment's. Keys are checked in the key store's
    ring in memory, which a rotation or deletion made by this process updates at once (by another
    process: within seconds, see `aimi.platform.keys`)."""
    name = request.path_params.get("deployment") or request.headers.get("azureml-model-deployment")
    if name is not None and not NAME_PATTERN.fullmatch(name):
        raise NotFound(f"Deployment '{name[:80]}' not found.")  # no deployment can have that name
    fleet = services(request).fleet
    served = await fleet.get(name) if name else None
    key = key_from(request.headers)
    principal = await services(request).platform.keys.principal(key) if key else None
    if principal is None or (name is not None and principal.deployment_name != name):
        raise Unauthorized()
    return served or await fleet.get(principal.deployment_name), principal


async def info(request: Request) -> ModelInfo:
    served, _ = await deployment_for(request)
    return ModelInfo(model_name=served.offer.name, model_provider_name=served.offer.provider)


async def chat_completions(request: Request) -> Response:
    return await _chat(request, standard=AZURE_PARAMETERS, default_policy="error")


async def mistral_chat_completions(request: Request) -> Response:
    # Mistral's API has no extra-parameters header and answers a key it does not define with a 422,
    # which is what pass-through does with a key aimi does not know; the header may still say drop.
    return await _chat(request, standard=MISTRAL_PARAMETERS, default_policy="pass-through")


async def _chat(request: Request, *, standard: frozenset[str], default_policy: Policy) -> Response:
    served, principal = await deployment_for(request)
    raw = await read_json_object(request, limit=services(request).settings.max_body_bytes)
    raw = parameters.apply(
        raw, standard=standard, policy=parameters.policy_from(request.headers, default=default_policy)
    )
    chat = convert.chat_request(convert.parse_body(raw))
    platform = services(request).platform
    meter = DeploymentMeter(
        deployment=served.deployment,
        offer=served.offer,
        key_id=principal.key_id,
        quotas=platform.quotas,
        ledger=platform.ledger,
        streamed=chat.stream,
        inflight=platform.inflight,
    )
    meta = convert.ResponseMeta(id=uuid.uuid4().hex, created=int(time.time()), model=served.offer.name)
    if chat.stream:
        answer = await served.service.open(chat, meter)
        return StreamingResponse(
            _events(answer, meta),
            media_type=sse.MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **_quota_headers(meter.quota)},
        )
    result = await _complete_unless_disconnected(request, served.service, chat, meter)
    if result is None:
        return Response(status_code=499)
    body = convert.completion(result=result, **meta)
    return Response(
        body.__pydantic_serializer__.to_json(body),
        media_type="application/json",
        headers=_quota_headers(meter.quota),
    )


def _quota_headers(quota: QuotaState | None) -> dict[str, str]:
    if quota is None:
        return {}
    return {
        "x-ratelimit-remaining-requests": str(max(0, quota.remaining_requests)),
        "x-ratelimit-remaining-tokens": str(max(0, quota.remaining_tokens)),
    }


async def _complete_unless_disconnected(
    request: Request, service: ChatService, chat: ChatRequest, meter: Meter
) -> ChatResult | None:
    """Run a non-streamed completion, cancelling it if the client goes away meanwhile."""
    task = asyncio.ensure_future(service.complete(chat, meter))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                log.info("client went away; generation cancelled")
                return None
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _events(answer: Answer, meta: convert.ResponseMeta) -> AsyncIterator[bytes]:
    """The SSE body: role first, content deltas, finish_reason + usage last, then [DONE].

    Errors after the first byte can no longer change the status: they end the stream with a final
    error event (seen by JS clients; Python's SDK drops it) and [DONE]."""
    stream = answer.events
    try:
        yield sse.event(convert.first_chunk(prompt_safety=answer.prompt_safety, **meta))
        async for event in stream:
            if isinstance(event, Delta):
                yield sse.event(convert.delta_chunk(delta=event, **meta))
            else:
                yield sse.event(convert.final_chunk(done=event, **meta))
        yield sse.DONE
    except AimiError as exc:
        yield sse.event(
            BriefEnvelope(error=BriefError(code=exc.code, message=exc.message, status=exc.status))
        )
        yield sse.DONE
    except Exception:
        log.exception("stream failed")
        failed = BriefError(code="InternalServerError", message="The stream failed.", status=500)
        yield sse.event(BriefEnvelope(error=failed))
        yield sse.DONE
    finally:
        await stream.aclose()
