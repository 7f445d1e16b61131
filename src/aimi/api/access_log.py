"""The access log without secrets: query values are redacted before any handler sees a request line.

A key may arrive in the query string (`?api-key=…`, `?subscription-key=…`, or any name a client
invents), and uvicorn's access log writes the full URL. Values are therefore redacted by default and
only a few names whose values are known to be harmless are kept. Headers never reach this log.
"""

from __future__ import annotations

import copy
import logging
from typing import Any
from urllib.parse import parse_qsl, quote

from uvicorn.config import LOGGING_CONFIG

REDACTED = "***"
KEPT = frozenset({"api-version", "since", "by", "deployment", "project"})
"""Query parameters whose values are logged as sent: versions, usage filters and names, never keys."""

_ACCESS_LOGGER = "uvicorn.access"


def redact_target(target: str) -> str:
    """`/info?api-key=K&api-version=1` → `/info?api-key=***&api-version=1`."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return f"{path}?{REDACTED}"
    kept = (
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~:') if name in KEPT else REDACTED}"
        for name, value in pairs
    )
    return f"{path}?{'&'.join(kept)}"


class RedactQuery(logging.Filter):
    """Rewrites the request target of uvicorn's access records (`client - "METHOD target HTTP/v" status`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_target(args[2]), args[3], args[4])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, with the redaction on the access logger itself (so
    every handler, including one added later or a parent's, only ever sees the redacted line)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQuery}
    config["loggers"][_ACCESS_LOGGER]["filters"] = ["redact_query"]
    return config
