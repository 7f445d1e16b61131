"""How a wire model refuses a value with aimi's own words instead of pydantic's.

A validator raises `refuse(message, at=...)`; the HTTP layer turns it into an `InvalidRequest` whose
`param` is the JSON path of the value that failed plus `at` (for a rule checked on a whole object
that is about one of its members), and `{where}` in the message becomes that path.
"""

from __future__ import annotations

from pydantic_core import PydanticCustomError

INVALID_REQUEST = "invalid_request"
"""The error type of every refusal made with `refuse`."""


def refuse(message: str, *, at: str = "") -> PydanticCustomError:
    """`message` may name the failing value as `{where}`; `at` is appended to its path
    (`".content"`, `"[1].function.name"`, or a top-level field when raised on the body)."""
    return PydanticCustomError(INVALID_REQUEST, message, {"at": at})


def join(path: str, at: str) -> str:
    """`messages[0]` + `.content` → `messages[0].content`; `` + `tool_choice` → `tool_choice`."""
    if not path:
        return at.lstrip(".")
    if at and not at.startswith(("[", ".")):
        at = "." + at
    return path + at
