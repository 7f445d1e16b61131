"""Server-sent events exactly as the strictest client (azure-ai-inference for Python) parses them:
`data: <one-line JSON>` + a blank line, LF only, no comments or other fields, `data: [DONE]` last."""

from __future__ import annotations

import json
from typing import Any

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
