"""Server-sent events exactly as the strictest client (azure-ai-inference for Python) parses them:
`data: <one-line JSON>` + a blank line, LF only, no comments or other fields, `data: [DONE]` last."""

from __future__ import annotations

from pydantic import BaseModel

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def event(payload: BaseModel) -> bytes:
    """One chunk as compact UTF-8 JSON (the model's serializer writes the bytes: once per token)."""
    return b"data: " + payload.__pydantic_serializer__.to_json(payload) + b"\n\n"
