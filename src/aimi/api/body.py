"""Reading a request body: a size limit, a declared JSON media type, JSON that must be an object,
clear errors otherwise."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from aimi.errors import InvalidRequest, MalformedJson, PayloadTooLarge


def is_json(content_type: str | None) -> bool:
    """`application/json` or `application/<anything>+json`, with any parameters (`charset=utf-8`)."""
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def not_json(content_type: str | None) -> InvalidRequest:
    """Every SDK declares its JSON. A body declared as anything else, or not declared, is refused
    rather than guessed at: `curl -d` declares a form, and a web page can make a browser post
    `text/plain` or a form to any address without asking first, but never `application/json`."""
    declared = "no Content-Type" if content_type is None else f"Content-Type {content_type[:80]!r}"
    return InvalidRequest(
        f"The request body must be JSON sent with 'Content-Type: application/json', not {declared} "
        "(with curl: -H 'Content-Type: application/json').",
        param="Content-Type",
    )


async def read_json_object(request: Request, *, limit: int) -> dict[str, Any]:
    raw = await _read(request, limit)
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        raise not_json(content_type)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"The request body is not valid UTF-8 (byte {exc.start}).") from exc
    value = _loads(text)
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(value)
    if not isinstance(value, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {type(value).__name__}.")
    return value


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is {declared} bytes; the limit is {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _refuse_lone_surrogates(value: Any) -> None:
    """JSON may escape half of a UTF-16 pair (`"\\ud800"`); such a string is not text and can be
    neither tokenized nor echoed back. Pairs that form a character were already joined by the parser."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedJson("The request body contains an unpaired UTF-16 surrogate escape.") from exc


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise MalformedJson("The request body is nested too deeply.") from exc
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError):  # e.g. an integer with thousands of digits
            raise MalformedJson(f"The request body is not valid JSON: {exc}.") from exc
        # Documentation examples (the Mistral deployment guide among them) carry a trailing comma;
        # accept exactly that slip, and report the original error for anything else.
        relaxed = _without_trailing_commas(text)
        if relaxed != text:
            try:
                return json.loads(relaxed)
            except json.JSONDecodeError:
                pass
        raise MalformedJson(
            f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from exc


def _without_trailing_commas(text: str) -> str:
    out: list[str] = []
    in_string = escaped = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i += 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)
