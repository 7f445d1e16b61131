"""`/openapi.json`, complete enough for schema-driven clients and fuzzers (schemathesis).

FastAPI writes most of the document. What it cannot know is completed here, once, when the document is
first asked for: the `{deployment}` path parameter the inference routes read themselves, the `$defs`
of hand-written body schemas (hoisted into `components.schemas`), the keys (`api-key` header or
`Authorization: Bearer`), and that request validation answers 400 with the error envelope, not
FastAPI's 422.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from aimi.api.schemas.completions import ChatCompletionChunk, Readiness
from aimi.api.schemas.errors import BriefEnvelope, ErrorEnvelope

_WHY = {
    400: "Invalid request: malformed JSON, a wrong Content-Type, a value out of range, an extra "
    "parameter the `extra-parameters` policy refuses, or a prompt blocked by content safety",
    401: "No key, or not a key of this deployment (or not the admin key)",
    404: "No such deployment, model or route",
    409: "Conflicts with what exists (a deployment name is taken)",
    413: "The request body is over the size limit",
    422: "Valid, but this deployment cannot apply a parameter (`parameter_not_supported`, named in "
    "`error.param` and `detail`)",
    429: "Over the deployment's requests or tokens per minute (see `Retry-After`)",
    503: "The deployment's engine is busy, unavailable or shutting down (see `Retry-After`)",
}
_PATH_TEMPLATE = re.compile(r"{([^}/]+)}")
_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
_OPEN = frozenset({"/healthz", "/readyz", "/openapi.json"})


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each status with the error envelope."""
    return {status: {"model": ErrorEnvelope, "description": _WHY[status]} for status in statuses}


def install(app: FastAPI) -> None:
    """Serve the completed document at `/openapi.json`."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "api-key"},
        "bearer": {"type": "http", "scheme": "bearer"},
    }
    # Models no route returns as its JSON body: the envelope, a stream's chunks and its error event.
    for model in (ErrorEnvelope, ChatCompletionChunk, BriefEnvelope, Readiness):
        if model.__name__ not in schemas:
            schema = model.model_json_schema(
                mode="serialization", ref_template="#/components/schemas/{model}"
            )
            _hoist_defs(schema, schemas)
            schemas[model.__name__] = schema
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            _declare_path_parameters(path, operation)
            _hoist_defs(operation, schemas)
            _validation_answers_400(operation)
            if path not in _OPEN:
                operation["security"] = _SECURITY
            if path == "/readyz":
                readiness = {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}
                operation["responses"]["200"]["content"] = readiness
                operation["responses"]["503"] = {
                    "description": "Starting, draining to stop, or degraded (the deployments cannot be read)",
                    "content": readiness,
                }
    if not _refers_to(document, "HTTPValidationError"):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def _declare_path_parameters(path: str, operation: dict[str, Any]) -> None:
    """Routes mounted under `/deployments/{deployment}` read the name from the request themselves."""
    declared = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "path"}
    for name in _PATH_TEMPLATE.findall(path):
        if name not in declared:
            operation.setdefault("parameters", []).insert(
                0,
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": "The deployment's name, as in its endpoint URL",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                },
            )


def _hoist_defs(node: Any, schemas: dict[str, Any]) -> None:
    """Move every `$defs` into `components.schemas` and point `#/$defs/X` there: a `$ref` is resolved
    against the document root, where `#/$defs` does not exist."""
    if isinstance(node, dict):
        for name, definition in node.pop("$defs", {}).items():
            _hoist_defs(definition, schemas)
            if _without_defaults(schemas.setdefault(name, definition)) != _without_defaults(definition):
                raise ValueError(f"two different schemas are both named {name!r}")
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        discriminator = node.get("discriminator")
        mapping: dict[str, Any] = discriminator.get("mapping", {}) if isinstance(discriminator, dict) else {}
        for tag, target in mapping.items():  # a tagged union names its members by reference too
            if isinstance(target, str) and target.startswith("#/$defs/"):
                mapping[tag] = "#/components/schemas/" + target.removeprefix("#/$defs/")
        for value in node.values():
            _hoist_defs(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, schemas)


def _without_defaults(node: Any) -> Any:
    """A schema as FastAPI's response models and pydantic's own generator both write it (FastAPI
    leaves out the `default` of a key that is omitted from answers)."""
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def _validation_answers_400(operation: dict[str, Any]) -> None:
    """FastAPI documents its own 422 for request validation; aimi answers those with a 400."""
    responses = operation.get("responses", {})
    if _refers_to(responses.get("422", {}), "HTTPValidationError"):
        del responses["422"]
        responses.setdefault(
            "400",
            {
                "description": _WHY[400],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
            },
        )


def _refers_to(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        if node.get("$ref") == f"#/components/schemas/{name}":
            return True
        return any(_refers_to(value, name) for value in node.values())
    if isinstance(node, list):
        return any(_refers_to(value, name) for value in node)
    return False
