"""Signing in to the portal: a server-side session behind an HttpOnly, SameSite=Strict cookie that
expires; a CSRF token on every state-changing request; sign-out; the admin key never in a URL."""

from __future__ import annotations

import httpx
import pytest

from aimi.web.sessions import SessionStore
from tests.web.conftest import ADMIN_KEY, BASE, csrf_of, sign_in

pytestmark = pytest.mark.anyio

PAGES = [
    "/portal/catalog",
    "/portal/catalog/SmolLM2-135M-Instruct",
    "/portal/deploy/SmolLM2-135M-Instruct",
    "/portal/deployments",
    "/portal/deployments/fake",
    "/portal/playground",
    "/portal/usage",
    "/portal/usage.csv",
]


async def test_the_root_leads_to_the_portal_and_its_pages_to_the_sign_in_page(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.get("/")).headers["location"] == "/portal/"
    for page in PAGES:
        response = await http.get(page)
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/portal/login?next=")


async def test_signing_in_sets_an_httponly_strict_expiring_cookie_and_returns_to_the_page(
    http: httpx.AsyncClient,
) -> None:
    response = await sign_in(http, next="/portal/usage")
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/usage"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("aimi_session="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/portal" in lowered
    assert "max-age=28800" in lowered
    assert ADMIN_KEY not in cookie
    assert ADMIN_KEY not in response.headers["location"]
    assert (await http.get("/portal/usage")).status_code == 200


async def test_a_wrong_key_or_a_missing_form_token_does_not_sign_in(http: httpx.AsyncClient) -> None:
    wrong = await sign_in(http, key="B" * 32)
    assert wrong.headers["location"].endswith("error=key")
    assert "B" * 32 not in wrong.headers["location"]
    page = await http.get(wrong.headers["location"])
    assert "That is not the admin key." in page.text
    forged = await http.post("/portal/login", data={"key": ADMIN_KEY, "csrf_token": "guess"})
    assert forged.headers["location"].endswith("error=form")
    assert (await http.get("/portal/catalog")).status_code == 303


async def test_sign_in_refuses_another_sites_form(http: httpx.AsyncClient) -> None:
    form = await http.get("/portal/login")
    response = await http.post(
        "/portal/login",
        data={"key": ADMIN_KEY, "csrf_token": csrf_of(form.text)},
        headers={"origin": "https://evil.example"},
    )
    assert response.status_code == 403


async def test_a_next_page_elsewhere_is_ignored(http: httpx.AsyncClient) -> None:
    response = await sign_in(http, next="https://evil.example/")
    assert response.headers["location"] == "/portal/catalog"


async def test_state_changing_portal_calls_need_the_csrf_token(portal: httpx.AsyncClient) -> None:
    token = portal.headers.pop("x-csrf-token")
    body = {"requests_per_minute": 5}
    assert (await portal.patch("/portal/api/deployments/fake", json=body)).status_code == 403
    wrong = {"x-csrf-token": "nope"}
    assert (await portal.patch("/portal/api/deployments/fake", json=body, headers=wrong)).status_code == 403
    other_site = {"x-csrf-token": token, "origin": "https://evil.example"}
    assert (
        await portal.patch("/portal/api/deployments/fake", json=body, headers=other_site)
    ).status_code == 403
    same_site = {"x-csrf-token": token, "origin": BASE}
    response = await portal.patch("/portal/api/deployments/fake", json=body, headers=same_site)
    assert response.status_code == 200, response.text
    assert response.json()["requests_per_minute"] == 5
    # reading needs the session only
    assert (await portal.get("/portal/api/deployments/fake")).status_code == 200


async def test_portal_calls_without_a_session_are_unauthorized(http: httpx.AsyncClient) -> None:
    response = await http.get("/portal/api/deployments")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Unauthorized"


async def test_signing_out_ends_the_session_and_its_playground_tokens(portal: httpx.AsyncClient) -> None:
    minted = await portal.post("/portal/api/deployments/fake/token")
    token = minted.json()["token"]
    hi = {"messages": [{"role": "user", "content": "hi"}]}
    assert (
        await portal.post("/deployments/fake/chat/completions", json=hi, headers={"api-key": token})
    ).status_code == 200
    page = await portal.get("/portal/catalog")
    response = await portal.post("/portal/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    assert (await portal.get("/portal/catalog")).status_code == 303
    assert (
        await portal.post("/deployments/fake/chat/completions", json=hi, headers={"api-key": token})
    ).status_code == 401


async def test_pages_forbid_inline_scripts_and_framing(portal: httpx.AsyncClient) -> None:
    for page in PAGES[:-1]:
        response = await portal.get(page)
        assert response.status_code == 200, page
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in response.text  # only <script type="module" src=...>
        assert "onclick=" not in response.text and "javascript:" not in response.text


async def test_the_management_api_still_takes_the_admin_key_header(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/deployments", headers={"api-key": ADMIN_KEY})).status_code == 200
    assert (await http.get("/api/deployments")).status_code == 401


def test_a_session_expires() -> None:
    now = [1000.0]
    store = SessionStore(ttl_s=60, clock=lambda: now[0])
    session = store.open("someone")
    assert store.get(session.id) == session
    now[0] += 61
    assert store.get(session.id) is None
    assert store.get("") is None and store.get(None) is None


def test_a_closed_session_is_gone() -> None:
    store = SessionStore()
    session = store.open("someone")
    assert store.close(session.id) == session
    assert store.get(session.id) is None
