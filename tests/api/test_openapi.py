"""`/openapi.json` (`aimi.api.openapi`): a document schema-driven clients and fuzzers can use, and a
short schemathesis run against it: every answer documented, none a 500, none a hang."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import BaseModel

from aimi.api.app import create_app
from aimi.api.schemas.chat import AzureChatCompletionsBody, ChatCompletionsBody
from aimi.settings import Settings
from tests.api.checks import assert_error
from tests.api.conftest import ADMIN_KEY, no_filters
from tests.conftest import TEST_KEY, free_port
from tests.fakes import ScriptedEngine

CHAT_ERRORS = {"400", "401", "404", "413", "422", "429", "503"}


@pytest.fixture
async def document(admin_http: httpx.AsyncClient) -> dict[str, Any]:
    response = await admin_http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


@pytest.mark.anyio
async def test_every_path_parameter_is_declared(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        wanted = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        assert declared == wanted, (method, path)
    chat = document["paths"]["/deployments/{deployment}/chat/completions"]["post"]
    assert {"name": "deployment", "in": "path", "required": True}.items() <= chat["parameters"][0].items()


@pytest.mark.anyio
async def test_every_reference_resolves_in_the_document(document: dict[str, Any]) -> None:
    found = list(refs(document))
    assert found
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], ref
    assert "$defs" not in str(document)


@pytest.mark.anyio
async def test_the_chat_routes_document_their_errors_with_the_envelope(document: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for path, _method, operation in operations(document):
        if path.endswith("/chat/completions"):
            responses = operation["responses"]
            assert set(responses) >= CHAT_ERRORS | {"200"}, path
            for status in CHAT_ERRORS:
                assert responses[status]["content"]["application/json"]["schema"] == envelope
    error = document["components"]["schemas"]["ErrorBody"]
    assert {"code", "message", "status"} <= set(error["required"])


@pytest.mark.anyio
async def test_the_chat_routes_document_the_completion_and_the_chunks_of_a_stream(
    document: dict[str, Any],
) -> None:
    for path, _method, operation in operations(document):
        if path.endswith("/chat/completions"):
            content = operation["responses"]["200"]["content"]
            assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
            chunk = {"$ref": "#/components/schemas/ChatCompletionChunk"}
            assert content["text/event-stream"]["schema"] == chunk
    schemas = document["components"]["schemas"]
    assert {"id", "created", "model", "choices"} <= set(schemas["ChatCompletionChunk"]["required"])
    assert "usage" not in schemas["ChatCompletionChunk"]["required"]  # on the last chunk only


@pytest.mark.anyio
async def test_every_answer_with_a_body_is_documented_with_a_schema(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if status != "204":
                schema = response["content"]["application/json"]["schema"]
                assert schema and schema != {}, (method, path, status)


@pytest.mark.anyio
async def test_request_validation_is_documented_as_a_400_not_fastapis_422(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if path.startswith("/api/"):
            assert "422" not in operation["responses"], (method, path)
            assert {"400", "401", "404"} <= set(operation["responses"]), (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.anyio
async def test_keys_are_documented_as_a_header_or_a_bearer_token(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "api-key"}
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    for path, method, operation in operations(document):
        if path not in ("/healthz", "/readyz"):
            assert operation["security"] == [{"apiKey": []}, {"bearer": []}], (method, path)


@pytest.mark.anyio
async def test_each_chat_route_documents_its_own_fields(document: dict[str, Any]) -> None:
    def fields(path: str) -> set[str]:
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return set(body["properties"])

    assert "random_seed" not in fields("/chat/completions")  # an extra parameter there
    assert {"random_seed", "max_completion_tokens", "safe_prompt"} <= fields("/v1/chat/completions")
    assert {"messages", "max_tokens", "tools"} <= fields("/chat/completions")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "model"),
    [("/chat/completions", AzureChatCompletionsBody), ("/v1/chat/completions", ChatCompletionsBody)],
)
async def test_a_chat_routes_body_is_documented_from_its_request_model(
    document: dict[str, Any], path: str, model: type[BaseModel]
) -> None:
    operation = document["paths"][path]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert list(body["properties"]) == list(model.model_fields)
    assert body["description"] == inspect.getdoc(model)
    assert "#/$defs/" not in json.dumps(body) and "$defs" not in body  # in the components
    assert [p["name"] for p in operation["parameters"]] == ["extra-parameters"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/deployments", "GET, POST"),
        ("POST", "/api/deployments/fake", "DELETE, GET, PATCH"),
        ("GET", "/deployments/fake/chat/completions", "POST"),
        ("TRACE", "/healthz", "GET"),
    ],
)
async def test_a_method_a_path_does_not_answer_is_a_405_listing_those_it_does(
    admin_http: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await admin_http.request(method, path, headers={"api-key": ADMIN_KEY})
    assert response.status_code == 405
    assert response.headers["allow"] == allow


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["a%00b", "UPPER", "x" * 65, "-dash"])
async def test_a_deployment_name_no_deployment_can_have_is_a_404(
    admin_http: httpx.AsyncClient, name: str
) -> None:
    response = await admin_http.get(f"/deployments/{name}/info", headers={"api-key": TEST_KEY})
    assert_error(response, 404, "NotFound")


# -- the fuzzer --------------------------------------------------------------------------------------


@contextmanager
def served(tmp_path: Path) -> Iterator[str]:
    """The app over the scripted engine, behind a real uvicorn on a loopback port, in a thread."""
    settings = Settings(
        api_key=TEST_KEY, name="fake", admin_key=ADMIN_KEY, data_dir=tmp_path / "data", safety=False
    )
    app = create_app(settings, engine=ScriptedEngine(), safety_filters=no_filters)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


CONFIG = f"""
workers = 1
request-timeout = 10
max-failures = 5

[generation]
deterministic = true
database = "none"
max-examples = 8
with-security-parameters = false

[phases]
stateful.enabled = false

[checks]
# Semantic rules no JSON schema states (a tool message names the call it answers, tool_choice names
# one of the tools...) refuse some schema-valid bodies with a documented 400.
positive_data_acceptance.enabled = false

[warnings]
fail-on = ["unresolvable_reference", "missing_auth"]

[parameters]
"path.deployment" = "fake"

[[operations]]
include-path-regex = "^/api/"
headers = {{ "api-key" = "{ADMIN_KEY}" }}

[[operations]]
exclude-path-regex = "^/api/"
headers = {{ "api-key" = "{TEST_KEY}" }}
"""


@pytest.mark.parametrize(
    "operations",
    [
        # The /models base runs the same code as the root: left out to keep the run short.
        ["--exclude-path-regex", "^/(api|models)/"],
        # On a server of its own: regenerating or deleting `fake` must not turn the others into 401s.
        ["--include-path-regex", "^/api/"],
    ],
    ids=["inference", "management"],
)
def test_a_schema_driven_fuzzer_finds_every_answer_documented_and_none_a_500(
    tmp_path: Path, operations: list[str]
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with served(tmp_path) as base:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
             f"{base}/openapi.json", "--no-color", *operations],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert " 0 passed" not in run.stdout
