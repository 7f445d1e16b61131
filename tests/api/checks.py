"""Assertions the HTTP-layer tests share."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fakes import ScriptedEngine


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The wire envelope every error carries: JSON `{"error": {code, message, status}}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["status"] == status
    if code is not None:
        assert error["code"] == code
    assert response.headers.get("x-ms-error-code") == error["code"]
    assert "retry-after" not in response.headers
    return body


def prompt_text(engine: ScriptedEngine, index: int = -1) -> str:
    """The fake tokenizer is one token per UTF-8 byte, so the prompt decodes back to its text."""
    return bytes(engine.requests[index].prompt).decode("utf-8")
