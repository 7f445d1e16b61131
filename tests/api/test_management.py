"""The management API under `/api/` (`aimi.api.management`), in process over a scripted engine, on
SQLite and on PostgreSQL: the admin key, the catalog, deployments, keys and usage as JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aimi.api.app import create_app
from aimi.api.services import services_of
from aimi.safety.registry import Filters
from aimi.settings import Settings
from tests.conftest import TEST_KEY
from tests.fakes import ScriptedEngine

pytestmark = pytest.mark.anyio

ADMIN_KEY = "A" * 32
ADMIN = {"api-key": ADMIN_KEY}
HI = {"messages": [{"role": "user", "content": "hi"}]}
PROMPT_TOKENS = len("<user>hi<assistant>")  # the scripted engine's tokens are bytes
SMOLLM2 = "SmolLM2-135M-Instruct"
UPSTREAM = "http://upstream.test:8080"
PRICED = {
    "name": "Priced-Model",
    "provider": "me",
    "context_length": 4096,
    "price_input_per_1k": "2",
    "price_output_per_1k": "4",
    "terms": "Pay as you go.",
    "source": UPSTREAM,
}


def no_filters() -> Filters:
    """Content safety is not under test here: deployments made through the API get no filters."""
    return [], []


@pytest.fixture
async def app(engine: ScriptedEngine, tmp_path: Path, database_url: str) -> AsyncIterator[FastAPI]:
    """The app with the served deployment `fake` (key TEST_KEY) and the admin key ADMIN_KEY."""
    settings = Settings(
        api_key=TEST_KEY,
        name="fake",
        admin_key=ADMIN_KEY,
        data_dir=tmp_path,
        database_url=database_url,
        redis_url=None,
        safety=False,
    )
    application = create_app(settings, engine=engine, safety_filters=no_filters)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no key of its own: each call says which key it carries."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://aimi.test") as c:
        yield c


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/api/deployments", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def keys_of(created: dict[str, Any]) -> dict[str, str]:
    return {k["which"]: k["key"] for k in created["keys"]}


async def chat(http: httpx.AsyncClient, deployment: str, key: str, **body: Any) -> httpx.Response:
    return await http.post(
        f"/deployments/{deployment}/chat/completions", json=HI | body, headers={"api-key": key}
    )


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    return str(error["message"])


# -- the admin key -------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/api/models", None),
    ("POST", "/api/models", PRICED),
    ("GET", f"/api/models/{SMOLLM2}", None),
    ("GET", "/api/deployments", None),
    ("POST", "/api/deployments", {"project": "p", "model": SMOLLM2, "name": "sneaky"}),
    ("GET", "/api/deployments/fake", None),
    ("DELETE", "/api/deployments/fake", None),
    ("GET", "/api/deployments/fake/keys", None),
    ("POST", "/api/deployments/fake/keys/primary/regenerate", None),
    ("GET", "/api/usage", None),
]


@pytest.mark.parametrize(
    "headers",
    [{}, {"api-key": TEST_KEY}, {"authorization": f"Bearer {TEST_KEY}"}, {"api-key": "x" * 32}],
    ids=["no-key", "deployment-key", "deployment-key-as-bearer", "unknown-key"],
)
async def test_every_management_route_needs_the_admin_key(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, path, body in ROUTES:
        response = await http.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path)
        assert_error(response, 401, "Unauthorized")
    assert (await chat(http, "fake", TEST_KEY)).status_code == 200  # nothing changed
    assert [o["name"] for o in (await http.get("/api/models", headers=ADMIN)).json()].count(
        "Priced-Model"
    ) == 0
    assert [d["name"] for d in (await http.get("/api/deployments", headers=ADMIN)).json()] == ["fake"]


@pytest.mark.parametrize(
    "headers", [ADMIN, {"authorization": f"Bearer {ADMIN_KEY}"}], ids=["api-key", "bearer"]
)
async def test_the_admin_key_is_taken_as_api_key_or_bearer_token(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await http.get("/api/deployments", headers=headers)).status_code == 200


async def test_the_admin_key_opens_no_deployment(http: httpx.AsyncClient) -> None:
    assert_error(await chat(http, "fake", ADMIN_KEY), 401, "Unauthorized")


# -- the catalog ---------------------------------------------------------------------------------


async def test_the_catalog_lists_the_built_in_offers_with_prices_and_terms(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/models", headers=ADMIN)
    assert response.status_code == 200
    offers = {m["name"]: m for m in response.json()}
    assert len(offers) == 7 and SMOLLM2 in offers and "Mistral-Large" in offers
    large = offers["Mistral-Large"]
    assert (large["provider"], large["context_length"], large["source"], large["builtin"]) == (
        "MistralAI",
        32768,
        None,
        True,
    )
    assert Decimal(large["price_input_per_1k"]) == Decimal("0.004")
    assert Decimal(large["price_output_per_1k"]) == Decimal("0.012")
    assert large["capabilities"]["tools"] is True
    assert "Mistral AI" in large["terms"]


async def test_one_catalog_entry_can_be_shown(http: httpx.AsyncClient) -> None:
    shown = (await http.get(f"/api/models/{SMOLLM2}", headers=ADMIN)).json()
    assert (shown["name"], shown["source"], shown["model_type"]) == (SMOLLM2, "embedded", "chat-completions")
    assert_error(await http.get("/api/models/GPT-5", headers=ADMIN), 404, "NotFound")


async def test_a_model_added_through_the_api_joins_the_catalog(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/models", json=PRICED, headers=ADMIN)
    assert response.status_code == 201, response.text
    added = response.json()
    assert (added["name"], added["builtin"], added["source"]) == ("Priced-Model", False, UPSTREAM)
    assert Decimal(added["price_output_per_1k"]) == 4
    shown = (await http.get("/api/models/Priced-Model", headers=ADMIN)).json()
    prices = ("price_input_per_1k", "price_output_per_1k")
    assert [Decimal(shown[p]) for p in prices] == [Decimal(added[p]) for p in prices] == [2, 4]
    assert {k: v for k, v in shown.items() if k not in prices} == {
        k: v for k, v in added.items() if k not in prices
    }
    assert_error(await http.post("/api/models", json=PRICED, headers=ADMIN), 409, "Conflict")


@pytest.mark.parametrize(
    "change",
    [{"price_input_per_1k": "-1"}, {"context_length": 0}, {"name": ""}, {"color": "blue"}],
    ids=["negative-price", "no-context", "no-name", "unknown-field"],
)
async def test_a_model_that_does_not_fit_the_schema_is_a_400(
    http: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    assert_error(await http.post("/api/models", json=PRICED | change, headers=ADMIN), 400, "invalid_request")


# -- deployments ---------------------------------------------------------------------------------


async def test_creating_a_deployment_returns_its_endpoint_its_terms_and_its_two_keys(
    http: httpx.AsyncClient,
) -> None:
    created = await create(http, project="research", model=SMOLLM2, name="smol", requests_per_minute=7)
    d = created["deployment"]
    assert (d["name"], d["project"], d["model"], d["source"]) == ("smol", "research", SMOLLM2, "embedded")
    assert (d["requests_per_minute"], d["tokens_per_minute"]) == (7, 200_000)
    assert d["endpoint"] == "http://aimi.test/deployments/smol"
    assert created["terms_accepted"] is True
    assert "Apache" in created["terms"]
    keys = keys_of(created)
    assert set(keys) == {"primary", "secondary"}
    assert all(len(k) == 32 for k in keys.values())


async def test_a_deployment_created_through_the_api_is_served_at_once(http: httpx.AsyncClient) -> None:
    created = await create(http, project="research", model=SMOLLM2, name="smol", requests_per_minute=7)
    keys = keys_of(created)
    response = await chat(http, "smol", keys["primary"])
    assert response.status_code == 200, response.text
    assert response.headers["x-ratelimit-remaining-requests"] == "6"
    assert (await chat(http, "smol", keys["secondary"])).status_code == 200
    info = await http.get("/deployments/smol/info", headers={"api-key": keys["primary"]})
    assert info.json()["model_name"] == SMOLLM2


async def test_a_deployment_made_beside_the_server_is_served_from_its_first_request(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    """As `aimi deployments create` does it: straight into the database, while the server runs."""
    created = await asyncio.to_thread(
        services_of(app).platform.deployments.create, project="cli", model=SMOLLM2, name="from-cli"
    )
    await asyncio.sleep(1.1)  # unknown names re-read the store at most once a second
    assert (await chat(http, "from-cli", created.keys[0].key)).status_code == 200


async def test_a_second_deployment_of_the_same_model_in_another_project_gets_its_own_terms(
    http: httpx.AsyncClient,
) -> None:
    await create(http, project="research", model=SMOLLM2, name="smol")
    await http.delete("/api/deployments/smol", headers=ADMIN)
    again = await create(http, project="research", model=SMOLLM2, name="smol-again")
    other = await create(http, project="production", model=SMOLLM2, name="smol-prod")
    assert (again["terms_accepted"], other["terms_accepted"]) == (False, True)


async def test_deployments_are_listed_and_filtered_by_project(http: httpx.AsyncClient) -> None:
    await create(http, project="research", model=SMOLLM2, name="smol")
    await create(http, project="research", model="Mistral-Small", name="small", source=UPSTREAM)
    listed = (await http.get("/api/deployments", headers=ADMIN)).json()
    assert [(d["name"], d["project"]) for d in listed] == [
        ("fake", "default"),
        ("small", "research"),
        ("smol", "research"),
    ]
    research = (await http.get("/api/deployments", params={"project": "research"}, headers=ADMIN)).json()
    assert [d["name"] for d in research] == ["small", "smol"]


async def test_showing_a_deployment_gives_its_key_hints_never_its_keys(http: httpx.AsyncClient) -> None:
    created = await create(http, project="research", model=SMOLLM2, name="smol")
    response = await http.get("/api/deployments/smol", headers=ADMIN)
    shown = response.json()
    assert shown["endpoint"] == "http://aimi.test/deployments/smol"
    assert [(k["which"], k["hint"]) for k in shown["keys"]] == [
        (which, key[-4:]) for which, key in sorted(keys_of(created).items())
    ]
    assert not any(key in response.text for key in keys_of(created).values())
    listed = (await http.get("/api/deployments/smol/keys", headers=ADMIN)).json()
    assert listed == shown["keys"]


async def test_deleting_a_deployment_stops_it_and_its_keys_at_once(http: httpx.AsyncClient) -> None:
    created = await create(http, project="research", model=SMOLLM2, name="smol")
    key = keys_of(created)["primary"]
    assert (await chat(http, "smol", key)).status_code == 200
    response = await http.delete("/api/deployments/smol", headers=ADMIN)
    assert response.status_code == 204
    assert_error(await http.get("/api/deployments/smol", headers=ADMIN), 404, "NotFound")
    assert (await chat(http, "smol", key)).status_code in (401, 404)
    assert (await http.post("/chat/completions", json=HI, headers={"api-key": key})).status_code == 401
    assert [d["name"] for d in (await http.get("/api/deployments", headers=ADMIN)).json()] == ["fake"]
    assert_error(await http.delete("/api/deployments/smol", headers=ADMIN), 404, "NotFound")


def new(name: str, model: str = SMOLLM2, project: str = "p", **more: Any) -> dict[str, Any]:
    return {"project": project, "model": model, "name": name, **more}


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (new("fake"), 409, "Conflict", "names are unique"),
        (new("twin", project="default"), 409, "Conflict", "one deployment per model"),
        (new("large", "Mistral-Large"), 400, "invalid_request", "give a source"),
        (new("large", "Mistral-Large", source="/no/such.gguf"), 400, "invalid_request", "neither a file"),
        (new("gpt", "GPT-5"), 404, "NotFound", "GPT-5"),
        (new("Not_A_Url"), 400, "invalid_request", "Invalid deployment"),
        (new("slow", requests_per_minute=0), 400, "invalid_request", ""),
        (new("x", color="blue"), 400, "invalid_request", ""),
    ],
    ids=[
        "taken-name",
        "same-model-same-project",
        "no-source",
        "bad-source",
        "unknown-model",
        "bad-name",
        "zero-quota",
        "unknown-field",
    ],
)
async def test_a_deployment_that_breaks_a_rule_is_refused_with_a_clear_error(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, code: str, message: str
) -> None:
    response = await http.post("/api/deployments", json=body, headers=ADMIN)
    assert message in assert_error(response, status, code)
    assert [d["name"] for d in (await http.get("/api/deployments", headers=ADMIN)).json()] == ["fake"]


# -- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["primary", "secondary"])
async def test_regenerating_a_key_leaves_the_other_one_working(http: httpx.AsyncClient, which: str) -> None:
    old = keys_of(await create(http, project="research", model=SMOLLM2, name="smol"))
    other = "secondary" if which == "primary" else "primary"
    response = await http.post(f"/api/deployments/smol/keys/{which}/regenerate", headers=ADMIN)
    assert response.status_code == 200, response.text
    issued = response.json()
    assert issued["which"] == which and len(issued["key"]) == 32 and issued["key"] != old[which]
    assert_error(await chat(http, "smol", old[which]), 401, "Unauthorized")
    assert (await chat(http, "smol", issued["key"])).status_code == 200
    assert (await chat(http, "smol", old[other])).status_code == 200


async def test_regenerating_needs_primary_or_secondary_of_a_known_deployment(http: httpx.AsyncClient) -> None:
    bad = await http.post("/api/deployments/fake/keys/tertiary/regenerate", headers=ADMIN)
    assert_error(bad, 400, "invalid_request")
    ghost = await http.post("/api/deployments/ghost/keys/primary/regenerate", headers=ADMIN)
    assert_error(ghost, 404, "NotFound")
    assert (await chat(http, "fake", TEST_KEY)).status_code == 200


async def test_a_key_opens_only_its_own_deployment(http: httpx.AsyncClient) -> None:
    smol = keys_of(await create(http, project="research", model=SMOLLM2, name="smol"))
    assert_error(await chat(http, "fake", smol["primary"]), 401, "Unauthorized")
    assert_error(await chat(http, "smol", TEST_KEY), 401, "Unauthorized")


# -- usage ---------------------------------------------------------------------------------------


def sse_usage(response: httpx.Response) -> dict[str, int]:
    chunks = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert chunks[-1] == "[DONE]"
    return json.loads(chunks[-2])["usage"]  # type: ignore[no-any-return]


async def test_usage_is_the_ledger_as_json_with_totals_and_cost_at_the_catalog_prices(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.post("/api/models", json=PRICED, headers=ADMIN)).status_code == 201
    priced = keys_of(await create(http, project="billing", model="Priced-Model", name="priced"))["primary"]
    seen: dict[str, list[dict[str, int]]] = {"fake": [], "priced": []}
    for deployment, key, body in [
        ("fake", TEST_KEY, {}),
        ("fake", TEST_KEY, {"max_tokens": 2}),
        ("priced", priced, {}),
        ("priced", priced, {"max_tokens": 1}),
    ]:
        response = await chat(http, deployment, key, **body)
        seen[deployment].append(response.json()["usage"])
    streamed = await chat(http, "priced", priced, stream=True)
    seen["priced"].append(sse_usage(streamed))

    response = await http.get("/api/usage", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    lines = {line["deployment"]: line for line in body["lines"]}
    assert set(lines) == {"fake", "priced"}
    for deployment, usages in seen.items():
        line = lines[deployment]
        assert line["requests"] == len(usages)
        assert line["prompt_tokens"] == sum(u["prompt_tokens"] for u in usages)
        assert line["completion_tokens"] == sum(u["completion_tokens"] for u in usages)
        assert line["total_tokens"] == sum(u["total_tokens"] for u in usages)
        assert line["period"] is None
    assert lines["priced"]["prompt_tokens"] == 3 * PROMPT_TOKENS
    assert lines["priced"]["completion_tokens"] == 3 + 1 + 3
    cost = (3 * PROMPT_TOKENS * Decimal(2) + 7 * Decimal(4)) / 1000
    assert Decimal(lines["priced"]["cost"]) == cost
    total = body["total"]
    assert (total["deployment"], total["requests"]) == ("(total)", 5)
    assert total["total_tokens"] == sum(line["total_tokens"] for line in lines.values())


async def test_usage_can_be_for_one_deployment_by_hour_or_day_and_since_a_moment(
    http: httpx.AsyncClient,
) -> None:
    before = datetime.now(UTC)
    await chat(http, "fake", TEST_KEY)
    one = (await http.get("/api/usage", params={"deployment": "fake"}, headers=ADMIN)).json()
    assert [line["deployment"] for line in one["lines"]] == ["fake"]
    by_hour = (await http.get("/api/usage", params={"by": "hour"}, headers=ADMIN)).json()
    by_day = (await http.get("/api/usage", params={"by": "day"}, headers=ADMIN)).json()
    moments = (before, datetime.now(UTC))
    [hour] = by_hour["lines"]
    assert hour["period"] in {t.strftime("%Y-%m-%d %H:00") for t in moments}
    [day] = by_day["lines"]
    assert day["period"] in {t.strftime("%Y-%m-%d") for t in moments}
    recent = (await http.get("/api/usage", params={"since": "1h"}, headers=ADMIN)).json()
    assert recent["total"]["requests"] == 1
    future = (await http.get("/api/usage", params={"since": "2999-01-01"}, headers=ADMIN)).json()
    assert (future["lines"], future["total"]["requests"]) == ([], 0)
    nobody = (await http.get("/api/usage", params={"deployment": "ghost"}, headers=ADMIN)).json()
    assert nobody["total"]["requests"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": "99999999999d"},
        {"since": "9" * 5000 + "h"},
        {"since": "\u00b2d"},
        {"since": "9999-12-31T23:00:00-05:00"},
        {"since": "0001-01-01T00:00:00+05:00"},
        {"by": "week"},
        {"deployment": "a\x00b"},
        {"deployment": "fake", "since": "x\x00"},
    ],
    ids=["since", "since-overflow", "since-digits", "since-unicode-digit", "since-after-9999",
         "since-before-1", "by", "deployment-nul", "since-nul"],
)  # fmt: skip
async def test_a_bad_usage_query_is_a_400_naming_the_parameter(
    http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await http.get("/api/usage", params=params, headers=ADMIN)
    assert_error(response, 400, "invalid_request")
    error = response.json()["error"]
    named = "since" if "since" in params else next(iter(params))
    assert error["param"] == named
    assert f"'{named}'" in error["message"]
    assert "Traceback" not in error["message"] and "File " not in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/api/deployments/a%00b", "name"),
        ("GET", "/api/models/a%00b", "name"),
        ("GET", "/api/deployments?project=a%00b", "project"),
        ("POST", "/api/deployments/fake/keys/tertiary/regenerate", "which"),
    ],
)
async def test_a_bad_path_or_query_parameter_is_a_400_naming_it(
    http: httpx.AsyncClient, method: str, path: str, param: str
) -> None:
    response = await http.request(method, path, headers=ADMIN)
    assert_error(response, 400, "invalid_request")
    error = response.json()["error"]
    assert error["param"] == param
    assert f"'{param}'" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**PRICED, "name": "a\x00b"}, "name"),
        ({**PRICED, "capabilities": {"chat": "\x00"}}, "capabilities"),
        ({**PRICED, "context_length": 2**40}, "context_length"),
        ({**PRICED, "price_input_per_1k": "1e7"}, "price_input_per_1k"),
        ({**PRICED, "price_output_per_1k": "0.0000001"}, "price_output_per_1k"),
        ({**PRICED, "model_type": "x" * 65}, "model_type"),
    ],
    ids=["nul", "nested-nul", "huge-int", "huge-price", "price-precision", "long-type"],
)
async def test_a_management_body_the_database_could_not_store_is_a_400(
    http: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    response = await http.post("/api/models", json=body, headers=ADMIN)
    assert_error(response, 400, "invalid_request")
    assert response.json()["error"]["param"] == param


async def test_a_deployment_quota_the_database_could_not_store_is_a_400(http: httpx.AsyncClient) -> None:
    body = {"project": "p", "model": SMOLLM2, "name": "big", "requests_per_minute": 2**63}
    response = await http.post("/api/deployments", json=body, headers=ADMIN)
    assert_error(response, 400, "invalid_request")
    assert response.json()["error"]["param"] == "requests_per_minute"


# -- content safety ------------------------------------------------------------------------------

DEFAULT_LEVELS = {"hate": "medium", "sexual": "medium", "violence": "medium", "self_harm": "medium"}


async def test_a_safety_policy_put_is_shown_whole_with_the_defaults_filled_in(
    http: httpx.AsyncClient,
) -> None:
    body = {
        "input": {"hate": "low"},
        "output": {"violence": None},
        "blocklists": [{"name": "legal", "terms": ["lawsuit"]}],
    }
    response = await http.put("/api/deployments/fake/safety", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    expected = {
        "enabled": True,
        "input": {**DEFAULT_LEVELS, "hate": "low"},
        "output": {**DEFAULT_LEVELS, "violence": None},
        "block_jailbreak": True,
        "blocklists": [{"name": "legal", "terms": ["lawsuit"], "patterns": []}],
        "fail_closed": False,
    }
    assert response.json() == expected  # no judge: the key is absent
    shown = await http.get("/api/deployments/fake/safety", headers=ADMIN)
    assert shown.json() == expected


async def test_a_judge_deployment_is_kept_with_the_policy(http: httpx.AsyncClient) -> None:
    await create(http, **new("judge"))
    response = await http.put("/api/deployments/fake/safety", json={"judge": "judge"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["judge"] == "judge"
    cleared = await http.put("/api/deployments/fake/safety", json={"judge": None}, headers=ADMIN)
    assert "judge" not in cleared.json()


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"input": {"hate": "safe"}}, "input.hate", "cannot be 'safe'"),
        ({"output": {"violence": "extreme"}}, "output.violence", "low, medium, high, or null"),
        ({"input": {"gore": "low"}}, "input.gore", "input.gore"),
        ({"colour": "red"}, "colour", "colour"),
        ({"enabled": 0}, "enabled", "boolean"),
        ({"blocklists": [{"name": "x", "patterns": ["(unclosed"]}]}, "blocklists[0]", "regular expression"),
        ({"blocklists": [{"name": "x", "terms": ["t"] * 10_001}]}, "blocklists[0].terms", "10000"),
        ({"blocklists": [{"name": "x", "terms": ["a\x00b"]}]}, "blocklists[0].terms[0]", "NUL"),
        ({"judge": "fake"}, "judge", "its own judge"),
        ({"judge": "nobody"}, "judge", "no deployment named 'nobody'"),
    ],
    ids=[
        "safe",
        "unknown-level",
        "unknown-category",
        "unknown-key",
        "not-bool",
        "bad-regex",
        "too-many-terms",
        "nul",
        "own-judge",
        "unknown-judge",
    ],
)
async def test_a_bad_safety_policy_is_a_400_naming_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], param: str, message: str
) -> None:
    response = await http.put("/api/deployments/fake/safety", json=body, headers=ADMIN)
    assert message in assert_error(response, 400, "invalid_request")
    assert response.json()["error"]["param"] == param
    shown = await http.get("/api/deployments/fake/safety", headers=ADMIN)
    assert shown.json()["input"] == DEFAULT_LEVELS  # nothing was stored


# -- the schema ----------------------------------------------------------------------------------


async def test_openapi_documents_the_management_routes(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    documented = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/")
        for method in operations
    }
    assert documented >= {
        ("GET", "/api/models"),
        ("POST", "/api/models"),
        ("GET", "/api/models/{name}"),
        ("GET", "/api/deployments"),
        ("POST", "/api/deployments"),
        ("GET", "/api/deployments/{name}"),
        ("DELETE", "/api/deployments/{name}"),
        ("GET", "/api/deployments/{name}/keys"),
        ("POST", "/api/deployments/{name}/keys/{which}/regenerate"),
        ("GET", "/api/usage"),
    }
    for path, operations in paths.items():
        if path.startswith("/api/"):
            for operation in operations.values():
                assert operation["summary"] and "management" in operation["tags"]
    create_body = paths["/api/deployments"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create_body["$ref"].endswith("/DeploymentIn")
    schemas = response.json()["components"]["schemas"]
    assert {"project", "model", "name", "source"} <= set(schemas["DeploymentIn"]["properties"])
    assert {"lines", "total"} <= set(schemas["UsageOut"]["properties"])
