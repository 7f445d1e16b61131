"""The error envelope every error response carries, as `/openapi.json` documents it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str
    status: int = Field(examples=[400])
    param: str | None = None
    """The parameter at fault: a body field's JSON path, a query or path parameter, or a header."""
    type: str | None = None
    innererror: dict[str, Any] | None = None
    """On a 400 `content_filter`: the content-safety verdict."""


class ErrorEnvelope(BaseModel):
    """`{"error": {...}}`, plus `detail` where some clients read it: the message on a 400
    `extra_parameters_not_allowed`, `[{loc, input, msg, type}]` on a 422 `parameter_not_supported`."""

    error: ErrorBody
    detail: str | list[dict[str, Any]] | None = None
