"""Which key a request carries: `api-key`, or `Authorization: Bearer` (the SDKs send one or both)."""

from __future__ import annotations

from starlette.datastructures import Headers


def key_from(headers: Headers) -> str | None:
    key = headers.get("api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None
