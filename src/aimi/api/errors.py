"""The one place where aimi's error tree becomes the wire envelope.

`{"error": {"code", "message", "status", "param", "type"}}` for every error, plus `detail` where
some clients read it (the `extra-parameters` 400 and the 422 `parameter_not_supported`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from aimi.api import convert
from aimi.api.body import is_json, not_json
from aimi.api.schemas.errors import (
    BriefEnvelope,
    BriefError,
    ErrorBody,
    ErrorEnvelope,
    InnerError,
    ParameterDetail,
)
from aimi.errors import (
    AimiError,
    ContentFiltered,
    EngineUnavailable,
    ExtraParametersNotAllowed,
    InvalidRequest,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    ParameterNotSupported,
    RateLimited,
)

log = logging.getLogger("aimi.api")


def envelope(error: AimiError) -> ErrorEnvelope:
    body = ErrorEnvelope(
        error=ErrorBody(code=error.code, message=error.message, status=error.status, param=error.param)
    )
    if isinstance(error, ExtraParametersNotAllowed):
        body.detail = error.message
    if isinstance(error, ContentFiltered):
        body.error.innererror = InnerError(
            code="ResponsibleAIPolicyViolation",
            content_filter_result=convert.content_filter_results(error.decision, prompt=True),
        )
    if isinstance(error, ParameterNotSupported):
        body.detail = [
            ParameterDetail(
                loc=["body", error.param or ""],
                input=error.value,
                msg=error.message,
                type="parameter_not_supported",
            )
        ]
    return body


def headers_for(error: AimiError) -> dict[str, str]:
    headers = {"x-ms-error-code": error.code}
    if isinstance(error, RateLimited | EngineUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, RateLimited) and error.remaining_requests is not None:
        headers["x-ratelimit-remaining-requests"] = str(max(0, error.remaining_requests))
        headers["x-ratelimit-remaining-tokens"] = str(max(0, error.remaining_tokens or 0))
    return headers


def error_response(error: AimiError) -> JSONResponse:
    return JSONResponse(
        envelope(error).model_dump(mode="json"), status_code=error.status, headers=headers_for(error)
    )


def validation_error(exc: RequestValidationError, *, content_type: str | None) -> InvalidRequest:
    """FastAPI's validation of a management parameter or body, as one 400 naming the parameter (its
    JSON path in a body), without echoing the input."""
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    where, *path = first.get("loc", ()) or ("body",)
    message = str(first.get("msg", "invalid")).rstrip(".")
    if where in ("query", "path", "header", "cookie"):
        name = str(path[0]) if path else where
        return InvalidRequest(f"Invalid value for {where} parameter '{name}': {message}.", param=name)
    if not is_json(content_type):
        return not_json(content_type)
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", message)
        return MalformedJson(f"The request body is not valid JSON: {detail}.")
    if not path:
        if first.get("type") == "missing":
            return InvalidRequest("The request body is missing; send a JSON object.")
        return InvalidRequest(f"The request body must be a JSON object: {message}.")
    name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return InvalidRequest(f"Invalid value for '{name}': {message}.", param=name)


def _allowed_methods(request: Request) -> str:
    """The methods some route answers at this path (Starlette's own `Allow` names only the first
    route's, and each method is a route of its own here): each is tried against the routes."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    )


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the envelope."""

    async def on_aimi_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AimiError)
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_response(NotFound("Resource not found"))
        if exc.status_code == 405:
            response = error_response(MethodNotAllowed("Method not allowed for this route"))
            response.headers["Allow"] = _allowed_methods(request)
            return response
        code = str(exc.status_code)
        body = BriefEnvelope(error=BriefError(code=code, message=str(exc.detail), status=exc.status_code))
        return JSONResponse(
            body.model_dump(mode="json"), status_code=exc.status_code, headers={"x-ms-error-code": code}
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc, content_type=request.headers.get("content-type")))

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(AimiError("The server had an error while processing your request."))

    app.add_exception_handler(AimiError, on_aimi_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
