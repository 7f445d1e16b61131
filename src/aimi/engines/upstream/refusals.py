"""What an upstream server's refusals mean in aimi's error tree: the client's mistakes stay the
client's; the upstream's trouble (its credentials, its load, its failures) is the deployment being
unavailable. Read from whichever error body the server sends (OpenAI's and Azure's envelope, vLLM's and
Mistral's flat object, FastAPI's `detail`)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from aimi.errors import (
    AimiError,
    ContextLengthExceeded,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
)

log = logging.getLogger("aimi.engines")


@dataclass(frozen=True)
class UpstreamError:
    message: str
    code: str | None = None
    param: str | None = None


def error_of(body: Any) -> UpstreamError:
    """The message of any of the error bodies servers send (OpenAI's and Azure's envelope, vLLM's
    and Mistral's flat object, FastAPI's `detail`)."""
    if not isinstance(body, dict):
        return UpstreamError("no details")
    source = body.get("error", body)
    if isinstance(source, str):
        return UpstreamError(source)
    if not isinstance(source, dict):
        source = body
    message = source.get("message") or source.get("detail") or body.get("detail") or "no details"
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    code, param = source.get("code"), source.get("param")
    return UpstreamError(
        message, str(code) if code is not None else None, param if isinstance(param, str) else None
    )


def forbidden_fields(response: httpx.Response) -> set[str]:
    """The body fields a pydantic-validated server refused as unknown (`extra_forbidden`), read from
    its `detail` list wherever the error puts it (the Mistral API: inside `message`, as an object or
    as JSON text)."""
    try:
        body = response.json()
    except ValueError:
        return set()
    found: set[str] = set()
    nested = [body]
    while nested:
        node = nested.pop()
        if isinstance(node, str) and node.startswith("{"):
            node = _loads(node)
        if isinstance(node, dict):
            nested.extend(node.get(key) for key in ("detail", "message", "error"))
        elif isinstance(node, list):
            for item in node:
                if not isinstance(item, dict) or item.get("type") != "extra_forbidden":
                    continue
                loc = item.get("loc")
                if isinstance(loc, list) and len(loc) > 1 and loc[0] == "body":
                    found.add(str(loc[1]))
    return found


def status_of(chunk: dict[str, Any]) -> int:
    error = chunk.get("error")
    for value in (
        (error.get("status"), error.get("code")) if isinstance(error, dict) else (chunk.get("code"),)
    ):
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
    return 500


def refusal(response: httpx.Response) -> AimiError:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text.strip()[:500] or response.reason_phrase}
    error = error_of(body)
    default = 60 if response.status_code in (401, 403) else 5
    wait = retry_after(response.headers.get("retry-after"), default)
    if response.status_code >= 500 or response.status_code in (401, 403):
        log.warning("upstream %s answered %d: %s", response.request.url, response.status_code, error.message)
    return error_for(response.status_code, error.message, error.code, error.param, retry_after=wait)


def error_for(
    status: int, message: str, code: str | None, param: str | None, *, retry_after: int
) -> AimiError:
    """An upstream refusal as aimi's own: the client's mistakes stay the client's; the upstream's
    trouble (its credentials, its load, its failures) is this deployment being unavailable."""
    if status in (400, 422):
        if code == "context_length_exceeded":
            return ContextLengthExceeded(message, param=param)
        return InvalidRequest(message, param=param)
    if status == 413:
        return PayloadTooLarge(message)
    if status in (401, 403):
        return EngineUnavailable(
            f"the upstream server rejected aimi's credentials (HTTP {status}: {message}); the operator "
            "sets the key aimi sends with AIMI_UPSTREAM_API_KEY",
            retry_after=retry_after,
        )
    if status == 429:
        return RateLimited(f"The upstream server is rate limiting: {message}", retry_after=retry_after)
    if status >= 500:
        return EngineUnavailable(
            f"the upstream server failed (HTTP {status}: {message})", retry_after=retry_after
        )
    return EngineError(f"the upstream server answered HTTP {status}: {message}")


def retry_after(raw: str | None, default: int) -> int:
    """Whole seconds from `Retry-After` (seconds or an HTTP date)."""
    if raw is None:
        return default
    try:
        return max(1, math.ceil(float(raw)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return default
    return max(1, math.ceil((when - datetime.now(UTC)).total_seconds()))


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
