"""The portal's JSON routes in process: the management API's handlers behind the session, the live
name check, tokens scoped to one deployment, quotas changed in place, "View code", the live load, and
pages that escape what users and models wrote."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aimi.platform.keys import TOKEN_PREFIX
from tests.conftest import TEST_KEY
from tests.web.conftest import ADMIN_KEY

pytestmark = pytest.mark.anyio

SMOLLM2 = "SmolLM2-135M-Instruct"
HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


async def deploy(portal: httpx.AsyncClient, name: str, **extra: object) -> dict[str, Any]:
    body = {"project": name, "model": SMOLLM2, "name": name, "accept_terms": True, **extra}
    response = await portal.post("/portal/api/deployments", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_the_name_check_says_what_creating_would_say(portal: httpx.AsyncClient) -> None:
    bad = (await portal.get("/portal/api/names/Bad_Name")).json()
    body = {"project": "p", "model": SMOLLM2, "name": "Bad_Name"}
    created = await portal.post("/api/deployments", json=body, headers={"api-key": ADMIN_KEY})
    assert not bad["ok"] and bad["message"] == created.json()["error"]["message"]
    taken = (await portal.get("/portal/api/names/fake")).json()
    assert taken == {
        "name": "fake",
        "ok": False,
        "message": "A deployment named 'fake' already exists; names are unique.",
        "endpoint": "http://aimi.test/deployments/fake",
    }
    assert (await portal.get("/portal/api/names/fresh-name")).json()["ok"] is True


async def test_deploying_needs_the_terms_accepted_and_records_who_and_when(portal: httpx.AsyncClient) -> None:
    refused = await portal.post(
        "/portal/api/deployments",
        json={"project": "t", "model": SMOLLM2, "name": "refused", "accept_terms": False},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "accept_terms"
    created = await deploy(portal, "accepted")
    assert {k["which"] for k in created["keys"]} == {"primary", "secondary"}
    page = await portal.get("/portal/deployments/accepted")
    assert f"by portal (admin key ending {ADMIN_KEY[-4:]})" in page.text
    assert "implicitly" not in page.text.split('id="terms-record"')[1].split("</p>")[0]


async def test_the_api_records_an_implicit_acceptance(portal: httpx.AsyncClient) -> None:
    response = await portal.post(
        "/api/deployments",
        json={"project": "q", "model": SMOLLM2, "name": "implicit"},
        headers={"api-key": ADMIN_KEY},
    )
    assert response.status_code == 201
    page = await portal.get("/portal/deployments/implicit")
    assert "by api (admin key ending" in page.text and "implicitly" in page.text


async def test_a_scoped_token_opens_its_deployment_only(portal: httpx.AsyncClient) -> None:
    await deploy(portal, "other")
    token = (await portal.post("/portal/api/deployments/fake/token")).json()["token"]
    assert token.startswith(TOKEN_PREFIX)
    mine = await portal.post("/deployments/fake/chat/completions", json=HI, headers={"api-key": token})
    assert mine.status_code == 200, mine.text
    bearer = await portal.post(
        "/deployments/fake/chat/completions", json=HI, headers={"authorization": f"Bearer {token}"}
    )
    assert bearer.status_code == 200
    assert (await portal.post("/chat/completions", json=HI, headers={"api-key": token})).status_code == 200
    other = await portal.post("/deployments/other/chat/completions", json=HI, headers={"api-key": token})
    assert other.status_code == 401
    assert (await portal.get("/api/deployments", headers={"api-key": token})).status_code == 401
    # the admin key is no deployment key
    admin = await portal.post("/deployments/fake/chat/completions", json=HI, headers={"api-key": ADMIN_KEY})
    assert admin.status_code == 401


async def test_a_token_dies_with_its_deployment(portal: httpx.AsyncClient) -> None:
    await deploy(portal, "short-lived")
    token = (await portal.post("/portal/api/deployments/short-lived/token")).json()["token"]
    assert (await portal.delete("/portal/api/deployments/short-lived")).status_code == 204
    await deploy(portal, "short-lived", project="again")
    response = await portal.post(
        "/deployments/short-lived/chat/completions", json=HI, headers={"api-key": token}
    )
    assert response.status_code == 401


async def test_a_quota_change_applies_at_once_and_keeps_the_keys(portal: httpx.AsyncClient) -> None:
    before = (await portal.get("/api/deployments/fake", headers={"api-key": ADMIN_KEY})).json()
    changed = await portal.patch(
        "/api/deployments/fake", json={"requests_per_minute": 2}, headers={"api-key": ADMIN_KEY}
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["requests_per_minute"] == 2 and after["tokens_per_minute"] == before["tokens_per_minute"]
    assert after["keys"] == before["keys"]
    statuses = [
        (
            await portal.post("/deployments/fake/chat/completions", json=HI, headers={"api-key": TEST_KEY})
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    bad = await portal.patch("/portal/api/deployments/fake", json={"tokens_per_minute": 0})
    assert bad.status_code == 400
    missing = await portal.patch("/portal/api/deployments/nope", json={"tokens_per_minute": 5})
    assert missing.status_code == 404


async def test_view_code_fills_in_the_real_endpoint_and_reads_the_key_from_the_environment(
    portal: httpx.AsyncClient,
) -> None:
    body = {"messages": [{"role": "user", "content": "it's \"quoted\" </script>"}], "temperature": 0.2,
            "safe_prompt": True, "stream": True}  # fmt: skip
    programs = (await portal.post("/portal/api/code", json={"deployment": "fake", "body": body})).json()
    assert set(programs) == {"python", "javascript", "openai", "mistralai", "curl", "json"}
    for lang, text in programs.items():
        assert TEST_KEY not in text and ADMIN_KEY not in text
        if lang != "json":
            assert "AZURE_INFERENCE_CREDENTIAL" in text and "http://aimi.test/deployments/fake" in text
    assert "model_extras={'safe_prompt': True}" in programs["python"]
    assert '"extra-parameters": "pass-through"' in programs["javascript"]
    assert "stream" not in programs["json"]
    compile(programs["python"], "python", "exec")
    compile(programs["openai"], "openai", "exec")
    compile(programs["mistralai"], "mistralai", "exec")


async def test_the_live_load_lists_each_served_deployment(portal: httpx.AsyncClient) -> None:
    rows = (await portal.get("/portal/api/load")).json()
    assert [r["deployment"] for r in rows] == ["fake"]
    assert {"running", "waiting", "generated_tokens", "at"} <= set(rows[0])


async def test_pages_escape_what_users_wrote(portal: httpx.AsyncClient) -> None:
    evil = '<img src=x onerror="alert(1)">'
    offer = {"name": evil, "provider": "<script>alert(2)</script>", "context_length": 4096,
             "price_input_per_1k": "1", "price_output_per_1k": "1", "terms": "<b>terms</b>"}  # fmt: skip
    assert (await portal.post("/api/models", json=offer, headers={"api-key": ADMIN_KEY})).status_code == 201
    catalog = await portal.get("/portal/catalog")
    assert evil not in catalog.text and "<script>alert(2)" not in catalog.text
    assert "&lt;img src=x onerror=" in catalog.text
    card = await portal.get(
        "/portal/catalog/" + httpx.URL("", params={}).copy_with(path=evil).raw_path.decode()
    )
    assert card.status_code == 200 and evil not in card.text and "<b>terms</b>" not in card.text


async def test_an_unknown_model_or_deployment_is_a_page_that_says_so(portal: httpx.AsyncClient) -> None:
    response = await portal.get("/portal/deployments/nope")
    assert response.status_code == 404 and "Deployment &#39;nope&#39; not found." in response.text


async def test_usage_page_and_csv_count_the_requests(portal: httpx.AsyncClient) -> None:
    for _ in range(3):
        await portal.post("/deployments/fake/chat/completions", json=HI, headers={"api-key": TEST_KEY})
    page = await portal.get("/portal/usage", params={"deployment": "fake", "since": "24h"})
    assert page.status_code == 200
    assert '<dd id="total-requests">3</dd>' in page.text
    assert 'data-series="requests" data-value="3"' in page.text
    csv = await portal.get("/portal/usage.csv", params={"deployment": "fake", "since": "24h"})
    assert csv.headers["content-type"].startswith("text/csv")
    header, row = csv.text.strip().splitlines()
    assert header.startswith("day,deployment,requests")
    assert row.split(",")[1:3] == ["fake", "3"]
