"""The error envelope every error response carries, and the error event that ends a failed stream."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from aimi.api.schemas.completions import ContentFilterResults, omitted


class InnerError(BaseModel):
    code: str = Field(examples=["ResponsibleAIPolicyViolation"])
    content_filter_result: ContentFilterResults | None
    """The content-safety verdict on the prompt."""


class ParameterDetail(BaseModel):
    """FastAPI's (and Mistral's) shape of a refused parameter."""

    loc: list[str] = Field(examples=[["body", "n"]])
    input: Any
    msg: str
    type: str = Field(examples=["parameter_not_supported"])


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str
    status: int = Field(examples=[400])
    param: str | None = None
    """The parameter at fault: a body field's JSON path, a query or path parameter, or a header."""
    type: str | None = None
    innererror: InnerError | None = omitted()
    """On a 400 `content_filter`: the content-safety verdict."""


class ErrorEnvelope(BaseModel):
    """`{"error": {...}}`, plus `detail` where some clients read it: the message on a 400
    `extra_parameters_not_allowed`, `[{loc, input, msg, type}]` on a 422 `parameter_not_supported`."""

    error: ErrorBody
    detail: str | list[ParameterDetail] | None = omitted()


class BriefError(BaseModel):
    code: str
    message: str
    status: int


class BriefEnvelope(BaseModel):
    """`{"error": {code, message, status}}`: the last event before `[DONE]` of a stream that failed
    after it began (its status was sent already), and the body of an HTTP error no route raised."""

    error: BriefError
