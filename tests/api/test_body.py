"""Reading request bodies (`aimi.api.body`): only a body declared as JSON is read as JSON, on the
inference routes and on the management API alike; anything else is a 400 naming `Content-Type`."""

from __future__ import annotations

import json

import httpx
import pytest

from aimi.api.body import is_json
from tests.api.checks import assert_error
from tests.api.conftest import ADMIN_KEY
from tests.conftest import TEST_KEY
from tests.fakes import ScriptedEngine

HI = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
CHAT_ROUTES = ["/chat/completions", "/v1/chat/completions", "/deployments/fake/chat/completions"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
        " application/json ;charset=UTF-8",
    ],
)
def test_json_and_its_suffixed_types_are_json(content_type: str) -> None:
    assert is_json(content_type)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "text/json", "application/x-www-form-urlencoded", "multipart/form-data", "json"],
)
def test_other_types_and_no_type_are_not_json(content_type: str | None) -> None:
    assert not is_json(content_type)


@pytest.mark.anyio
@pytest.mark.parametrize("path", CHAT_ROUTES)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"hello"),
        ("text/plain;charset=UTF-8", HI),  # what a browser's fetch() sends with a string body
        ("application/x-www-form-urlencoded", HI),  # what `curl -d` sends without -H
        ("multipart/form-data; boundary=x", b"--x\r\n\r\nhi\r\n--x--\r\n"),
        (None, HI),
    ],
    ids=["text", "text-json", "form", "multipart", "none"],
)
async def test_a_body_not_declared_as_json_is_a_400_naming_content_type(
    admin_http: httpx.AsyncClient, engine: ScriptedEngine, path: str, content_type: str | None, body: bytes
) -> None:
    headers = {"api-key": TEST_KEY}
    if content_type is not None:
        headers["content-type"] = content_type
    response = await admin_http.post(path, content=body, headers=headers)
    error = assert_error(response, 400, "invalid_request")
    assert error["error"]["param"] == "Content-Type"
    assert "-H 'Content-Type: application/json'" in error["error"]["message"]
    assert engine.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
async def test_a_json_body_with_parameters_or_a_json_suffix_is_read(
    admin_http: httpx.AsyncClient, content_type: str
) -> None:
    response = await admin_http.post(
        "/chat/completions", content=HI, headers={"api-key": TEST_KEY, "content-type": content_type}
    )
    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_an_empty_body_is_reported_as_empty_whatever_its_type(admin_http: httpx.AsyncClient) -> None:
    response = await admin_http.post("/chat/completions", content=b"", headers={"api-key": TEST_KEY})
    error = assert_error(response, 400, "invalid_request")
    assert "empty" in error["error"]["message"]


@pytest.mark.anyio
async def test_the_key_is_checked_before_the_body(admin_http: httpx.AsyncClient) -> None:
    response = await admin_http.post(
        "/chat/completions", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert_error(response, 401)


# -- the management API --------------------------------------------------------------------------------

DEPLOYMENT = json.dumps({"project": "p", "model": "SmolLM2-135M-Instruct", "name": "second"}).encode()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"hello"),
        ("text/plain", DEPLOYMENT),
        ("application/x-www-form-urlencoded", b"a=b"),
        (None, DEPLOYMENT),
    ],
    ids=["text", "text-json", "form", "none"],
)
async def test_a_management_body_not_declared_as_json_is_a_400_naming_content_type(
    admin_http: httpx.AsyncClient, content_type: str | None, body: bytes
) -> None:
    headers = {"api-key": ADMIN_KEY}
    if content_type is not None:
        headers["content-type"] = content_type
    response = await admin_http.post("/api/deployments", content=body, headers=headers)
    error = assert_error(response, 400, "invalid_request")
    assert error["error"]["param"] == "Content-Type"


@pytest.mark.anyio
async def test_a_management_body_that_is_not_json_is_a_400_invalid_json(
    admin_http: httpx.AsyncClient,
) -> None:
    response = await admin_http.post(
        "/api/deployments",
        content=b"{nope",
        headers={"api-key": ADMIN_KEY, "content-type": "application/json"},
    )
    error = assert_error(response, 400, "invalid_json")
    assert "/work" not in error["error"]["message"] and "File " not in error["error"]["message"]


@pytest.mark.anyio
async def test_a_missing_management_body_is_a_400(admin_http: httpx.AsyncClient) -> None:
    response = await admin_http.post(
        "/api/deployments", headers={"api-key": ADMIN_KEY, "content-type": "application/json"}
    )
    error = assert_error(response, 400, "invalid_request")
    assert "missing" in error["error"]["message"]


@pytest.mark.anyio
async def test_a_management_body_field_is_named_by_its_json_path(admin_http: httpx.AsyncClient) -> None:
    response = await admin_http.put(
        "/api/deployments/fake/safety",
        json={"blocklists": [{"name": "", "terms": []}]},
        headers={"api-key": ADMIN_KEY},
    )
    error = assert_error(response, 400, "invalid_request")
    assert error["error"]["param"] == "blocklists[0].name"
    assert "blocklists[0].name" in error["error"]["message"]
