"""The portal in a real browser: headless Chromium (Debian's package, driven by Playwright for Python)
against a real `aimi serve` with the embedded SmolLM2 model, doing what a person does: sign in, browse
the catalog, deploy under a new name with the terms accepted, copy a key, chat with streaming, stop a
long answer, meet a blocked prompt, run the code "View code" shows, rotate a key, lower a quota into a
429, read the usage chart, delete the deployment. Each test leaves a screenshot of its last page in
build/screenshots/ (ignored by git); the README's playground picture comes from the chat test.

Tests run in file order and share one deployment (made by the `deployment` fixture through the
deploy page); generations are short because the model runs on a couple of shared CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server

CHROMIUM = os.environ.get("AIMI_TEST_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
# The README's picture is taken again only when asked (a test run must not change tracked files).
README_IMAGE = (
    ROOT / "docs" / "images" / "playground.png"
    if os.environ.get("AIMI_REFRESH_README_IMAGE")
    else SHOTS / "playground-readme.png"
)
JS_DIR = ROOT / "tests" / "e2e" / "js"
ADMIN_KEY = "admin-key-for-the-portal-tests"
MODEL = "SmolLM2-135M-Instruct"
BLOCKED = "I will kill you and your whole family tonight."
FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Microsoft's content management policy."
)
WAIT_MS = 120_000

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extras bring it
    sync_playwright = None  # type: ignore[assignment]

MISSING = (
    "playwright is not installed (pip install -e '.[test]')"
    if sync_playwright is None
    else None
    if os.access(CHROMIUM, os.X_OK)
    else f"no Chromium at {CHROMIUM}: run scripts/browser.sh"
)
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]


if sync_playwright is not None:
    expect.set_options(timeout=30_000)  # a shared CPU answers slowly


@dataclass
class Deployed:
    name: str
    endpoint: str
    keys: dict[str, str]
    retired: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("portal"), "--threads", "2", env={"AIMI_ADMIN_KEY": ADMIN_KEY}
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    """One signed-in browser profile for the module (cookies kept between tests)."""
    made = browser.new_context(
        base_url=server.base_url, viewport={"width": 1280, "height": 860}, accept_downloads=True
    )
    made.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page = made.new_page()
    sign_in(page)
    page.close()
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A tab; afterwards its screenshot is saved, and it must have logged no error (a refused inline
    script, a failed module, an exception)."""
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    yield tab
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
    tab.close()
    expected = getattr(request.node, "expected_console_errors", 0)
    assert len([p for p in problems if "status of 4" not in p]) == 0, problems
    assert len([p for p in problems if "status of 4" in p]) <= expected, problems


def sign_in(page: Page) -> None:
    page.goto("/")
    expect(page).to_have_url(
        f"{page.context.pages[0].url.split('/portal')[0]}/portal/login?next=%2Fportal%2Fcatalog"
    )
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Model catalog")


def api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=f"{server.base_url}/api", headers={"api-key": ADMIN_KEY}, timeout=120)


def chat(endpoint: str, key: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{endpoint}/chat/completions",
        json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1, **body},
        headers={"api-key": key},
        timeout=120,
    )


def set_parameter(page: Page, selector: str, value: str) -> None:
    page.fill(selector, value)
    page.dispatch_event(selector, "change")


def ask(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.keyboard.press("Enter") if page.evaluate("document.activeElement?.id") == "prompt" else page.click(
        "#send"
    )


# -- sign in and catalog ----------------------------------------------------------------------------


def test_sign_in_with_the_admin_key_keeps_it_out_of_urls_and_storage(
    browser: Browser, server: Server
) -> None:
    fresh = browser.new_context(base_url=server.base_url)
    tab = fresh.new_page()
    visited: list[str] = []
    tab.on("request", lambda r: visited.append(r.url))
    tab.goto("/portal/usage")
    expect(tab.locator("h1")).to_have_text("Sign in")
    tab.fill("#key", "not-the-admin-key-at-all")
    tab.click("button[type=submit]")
    expect(tab.locator("#login-error")).to_have_text("That is not the admin key.")
    tab.fill("#key", ADMIN_KEY)
    tab.keyboard.press("Enter")
    expect(tab.locator("h1")).to_have_text("Usage & cost")
    assert all(ADMIN_KEY not in url for url in visited)
    assert (
        tab.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
        == "{}{}"
    )
    cookie = next(c for c in fresh.cookies() if c["name"] == "aimi_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > time.time()
    tab.click("text=Sign out")
    expect(tab.locator("h1")).to_have_text("Sign in")
    tab.goto("/portal/deployments")
    expect(tab.locator("h1")).to_have_text("Sign in")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / "test_sign_in.png"))
    fresh.close()


def test_browse_the_catalog_filter_it_and_open_a_model(page: Page) -> None:
    page.goto("/portal/catalog")
    cards = page.locator("#catalog .model-card")
    expect(cards.filter(has_text=MODEL)).to_have_count(1)
    page.select_option("select[name=capability]", "tools")
    page.click("text=Filter")
    expect(cards.filter(has_text="Mistral-Large")).to_have_count(1)
    expect(cards.filter(has_text=MODEL)).to_have_count(0)
    page.select_option("select[name=capability]", "")
    page.select_option("select[name=provider]", "HuggingFaceTB")
    page.click("text=Filter")
    expect(cards).to_have_count(1)
    page.click(f"text={MODEL}")
    expect(page.locator("h1")).to_have_text(MODEL)
    expect(page.locator(".terms-full")).to_contain_text("Apache License 2.0")
    expect(page.locator("text=1,000 prompt + 500 completion tokens cost")).to_be_visible()


# -- deploy -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(context: BrowserContext, server: Server) -> Deployed:
    """Deploy the embedded model under a new name through the deploy page."""
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.goto(f"/portal/catalog/{MODEL}")
    tab.get_by_role("link", name="Deploy", exact=True).click()
    expect(tab.locator("h1")).to_have_text(f"Deploy {MODEL}")
    name = f"portal-{uuid.uuid4().hex[:6]}"
    tab.fill("#project", name)
    tab.fill("#name", "Bad_Name")
    expect(tab.locator("#name-check")).to_have_text(
        "Invalid deployment name 'Bad_Name': use 1-64 lowercase letters, digits and dashes, "
        "starting and ending with a letter or digit."
    )
    tab.fill("#name", "smollm2")  # the served deployment's
    expect(tab.locator("#name-check")).to_have_text(
        "A deployment named 'smollm2' already exists; names are unique."
    )
    tab.fill("#name", name)
    expect(tab.locator("#name-check")).to_have_text("Available")
    expect(tab.locator("#endpoint-preview")).to_have_text(f"{server.base_url}/deployments/{name}")
    expect(tab.locator("#deploy-button")).to_be_disabled()  # until the terms are accepted
    tab.check("#accept")
    tab.click("#deploy-button")
    expect(tab.locator("#created-title")).to_be_visible()
    expect(tab.locator("#created")).to_contain_text("they are not shown again")
    keys = {"primary": tab.inner_text("#created-key1"), "secondary": tab.inner_text("#created-key2")}
    assert all(len(k) == 32 for k in keys.values())
    tab.close()
    return Deployed(name, f"{server.base_url}/deployments/{name}", keys)


def test_deploy_the_embedded_model_with_terms_accepted_and_copy_a_key(
    page: Page, deployment: Deployed, server: Server
) -> None:
    with api(server) as admin:
        shown = admin.get(f"/deployments/{deployment.name}").json()
    assert shown["model"] == MODEL and shown["endpoint"] == deployment.endpoint
    page.goto(f"/portal/deployments/{deployment.name}")
    expect(page.locator("#terms-record")).to_contain_text("by portal (admin key ending")
    expect(page.locator("#terms-record")).not_to_contain_text("implicitly")
    expect(page.locator("#keys .hint").first).to_have_text(f"••••••••{deployment.keys['primary'][-4:]}")
    expect(page.locator("#state")).to_have_text("ready")
    # copy: the endpoint button puts the URL on the clipboard
    page.click("button[data-copy-from=endpoint]")
    assert page.evaluate("navigator.clipboard.readText()") == deployment.endpoint
    assert chat(deployment.endpoint, deployment.keys["secondary"]).status_code == 200


def test_the_created_keys_can_be_copied(context: BrowserContext, server: Server) -> None:
    """The one-time keys panel: Copy puts the key itself on the clipboard."""
    tab = context.new_page()
    tab.goto(f"/portal/deploy/{MODEL}")
    name = f"copy-{uuid.uuid4().hex[:6]}"
    tab.fill("#project", name)
    tab.fill("#name", name)
    expect(tab.locator("#name-check")).to_have_text("Available")
    tab.check("#accept")
    tab.click("#deploy-button")
    expect(tab.locator("#created-title")).to_be_visible()
    tab.click("button[data-copy-from=created-key1]")
    key = tab.evaluate("navigator.clipboard.readText()")
    assert key == tab.inner_text("#created-key1")
    assert chat(f"{server.base_url}/deployments/{name}", key).status_code == 200
    expect(tab.locator("#go-deployment")).to_have_attribute("aria-disabled", "true")
    tab.check("#saved")
    tab.click("#go-deployment")
    expect(tab.locator("h1")).to_have_text(name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / "test_the_created_keys_can_be_copied.png"), full_page=True)
    with api(server) as admin:
        assert admin.delete(f"/deployments/{name}").status_code == 204
    tab.close()


# -- playground ---------------------------------------------------------------------------------


def open_playground(page: Page, deployment: Deployed) -> None:
    page.goto(f"/portal/deployments/{deployment.name}")
    page.click("#open-playground")
    expect(page.locator("h1")).to_have_text("Chat playground")
    expect(page.locator("#deployment")).to_have_value(deployment.name)
    # The heading and the select are in the HTML; the handlers come with the module script, which
    # runs before DOMContentLoaded. A message typed before it has run is never sent (CI saw one).
    page.wait_for_load_state("domcontentloaded")


def test_chat_in_the_playground_streams_token_by_token(page: Page, deployment: Deployed) -> None:
    open_playground(page, deployment)
    set_parameter(page, "#max_tokens", "48")
    set_parameter(page, "#temperature", "0")
    page.click("#wire-panel summary")
    page.focus("#prompt")
    ask(page, "Name three colours of the rainbow.")
    answer = page.locator("#history .msg.assistant").last
    # tokens arrive one by one: text is on the page while the answer is still pending
    page.wait_for_function(
        "() => { const a = [...document.querySelectorAll('#history .msg.assistant')].pop();"
        " return a && a.classList.contains('pending')"
        " && a.querySelector('.content').textContent.length > 0; }"
    )
    expect(answer).not_to_have_class("msg assistant pending", timeout=WAIT_MS)
    expect(answer.locator(".stats")).to_contain_text("finish_reason:")
    expect(answer.locator(".stats")).to_contain_text("time to first token:")
    expect(answer.locator(".stats")).to_contain_text("tokens/s")
    events = page.inner_text("#wire-events")
    assert events.count("data: ") > 3 and events.rstrip().endswith("data: [DONE]")
    request = page.inner_text("#wire-request")
    assert f"POST {deployment.endpoint}/chat/completions" in request and '"stream": true' in request
    assert ADMIN_KEY not in request and deployment.keys["primary"] not in request
    assert '"usage"' in page.inner_text("#wire-response")
    page.set_viewport_size({"width": 1280, "height": 800})
    README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    page.locator("#wire-panel summary").click()  # closed again for the picture
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(README_IMAGE))


def test_stop_a_long_answer(page: Page, deployment: Deployed, server: Server) -> None:
    open_playground(page, deployment)
    set_parameter(page, "#max_tokens", "2000")
    set_parameter(page, "#temperature", "0.8")
    ask(page, "Write a very long story about a dragon and a knight, with many chapters.")
    page.wait_for_function(
        "() => ([...document.querySelectorAll('#history .msg.assistant .content')]"
        ".pop()?.textContent.length ?? 0) > 20"
    )
    page.click("#stop")
    answer = page.locator("#history .msg.assistant").last
    expect(answer.locator(".note")).to_contain_text("Stopped")
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
    with api(server) as admin:  # the ledger bills what was produced, as cancelled
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page.goto(f"/portal/usage?deployment={deployment.name}&since=24h")
            if page.locator("#recent td", has_text="cancelled").count():
                break
            time.sleep(0.5)
        assert page.locator("#recent td", has_text="cancelled").count() >= 1
        assert admin.get("/usage", params={"deployment": deployment.name}).json()["total"]["requests"] >= 2


def test_a_blocked_prompt_shows_the_400s_message(
    page: Page, deployment: Deployed, request: pytest.FixtureRequest
) -> None:
    request.node.expected_console_errors = 1  # Chromium logs the 400 itself
    open_playground(page, deployment)
    ask(page, BLOCKED)
    answer = page.locator("#history .msg.assistant").last
    expect(answer.locator(".blocked")).to_contain_text("400 content_filter")
    expect(answer.locator(".blocked")).to_contain_text(FILTER_MESSAGE)
    expect(page.locator("#history .msg.user").last.locator(".filter")).to_contain_text("Prompt blocked:")


def test_view_code_and_run_the_python_snippet(page: Page, deployment: Deployed, tmp_path: Path) -> None:
    open_playground(page, deployment)
    set_parameter(page, "#max_tokens", "4")
    set_parameter(page, "#system", "You are terse.")
    page.fill("#prompt", "Say hi.")
    page.click("#code-panel summary")
    expect(page.locator("#code-python")).to_contain_text("client.complete(")
    code = page.inner_text("#code-python")
    assert deployment.endpoint in code and deployment.keys["primary"] not in code
    script = tmp_path / "snippet.py"
    script.write_text(code)
    done = run([sys.executable, str(script)], deployment)
    assert "CompletionsUsage" in done.stdout or "completion_tokens" in done.stdout, done.stdout


def run(
    command: list[str], deployment: Deployed, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMI_")}
    env["AZURE_INFERENCE_CREDENTIAL"] = deployment.keys["primary"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180, cwd=cwd)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


def test_every_view_code_snippet_runs(page: Page, deployment: Deployed, tmp_path: Path) -> None:
    """openai, mistralai, @azure-rest/ai-inference and curl, with every parameter the form sends."""
    open_playground(page, deployment)
    parameters = [
        ("#max_tokens", "4"), ("#temperature", "0.5"), ("#top_p", "0.9"), ("#seed", "7"),
        ("#presence_penalty", "0.1"), ("#frequency_penalty", "0.1"), ("#stop_sequences", "\n\n"),
        ("#system", "It's a \"quoted\" system message."),
    ]  # fmt: skip
    for selector, value in parameters:
        set_parameter(page, selector, value)
    page.check("#safe_prompt")
    page.dispatch_event("#safe_prompt", "change")
    page.select_option("#response_format", "json_object")
    page.fill("#prompt", 'Answer in JSON: {"hi": 1} </script>')
    page.click("#code-panel summary")
    expect(page.locator("#code-openai")).to_contain_text("safe_prompt")
    expect(page.locator("#code-curl")).to_contain_text("response_format")
    programs = {
        lang: page.inner_text(f"#code-{lang}")
        for lang in ("python", "openai", "mistralai", "curl", "javascript")
    }
    for lang in ("python", "openai", "mistralai"):
        (tmp_path / f"snippet_{lang}.py").write_text(programs[lang])
        run([sys.executable, str(tmp_path / f"snippet_{lang}.py")], deployment)
    (tmp_path / "curl.sh").write_text(programs["curl"])
    done = run(["bash", str(tmp_path / "curl.sh")], deployment)
    assert '"choices"' in done.stdout, done.stdout
    if shutil.which("node") and (JS_DIR / "node_modules" / "@azure-rest" / "ai-inference").is_dir():
        script = JS_DIR / f"portal-snippet-{uuid.uuid4().hex[:6]}.mjs"  # beside its node_modules
        script.write_text(programs["javascript"])
        try:
            run(["node", str(script)], deployment, cwd=JS_DIR)
        finally:
            script.unlink()


def test_an_answer_with_markup_is_shown_as_text_and_never_runs(page: Page, deployment: Deployed) -> None:
    """A model answer is untrusted: `<img onerror>` and `<script>` arrive as text (the stream here is
    served by the test in place of the model, so the answer is exactly that)."""
    evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'

    def chunk(delta: dict[str, str], finish: str | None = None, **extra: object) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}
        return f"data: {json.dumps(body | extra)}\n\n"

    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    events = (
        chunk({"content": evil[:30]})
        + chunk({"content": evil[30:]})
        + chunk({"content": ""}, "stop", usage=usage)
        + "data: [DONE]\n\n"
    )
    page.route(
        "**/chat/completions",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=events),
    )
    open_playground(page, deployment)
    ask(page, '<img src=y onerror="window.__pwned=3">')
    answer = page.locator("#history .msg.assistant").last
    expect(answer.locator(".content")).to_have_text(evil)
    expect(page.locator("#history .msg.user .content").last).to_have_text(
        '<img src=y onerror="window.__pwned=3">'
    )
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#history img, #history script").count() == 0


# -- keys, quotas, usage, delete --------------------------------------------------------------------


def test_regenerate_a_key_and_the_old_one_is_refused(page: Page, deployment: Deployed) -> None:
    old = deployment.keys["primary"]
    page.goto(f"/portal/deployments/{deployment.name}")
    page.click("button.regenerate[data-which=primary]")
    expect(page.locator("#regenerate-dialog")).to_contain_text("stop working immediately")
    page.click("#regenerate-confirm")
    expect(page.locator("#newkey-dialog")).to_be_visible()
    new = page.inner_text("#new-key")
    assert len(new) == 32 and new != old
    page.click("#newkey-dialog button[value=close]")
    expect(page.locator("#keys tr[data-which=primary] .hint")).to_have_text(f"••••••••{new[-4:]}")
    assert chat(deployment.endpoint, old).status_code == 401
    assert chat(deployment.endpoint, new).status_code == 200
    assert chat(deployment.endpoint, deployment.keys["secondary"]).status_code == 200
    deployment.retired.append(old)
    deployment.keys["primary"] = new


def test_change_a_quota_and_the_next_burst_gets_a_429(
    page: Page, deployment: Deployed, server: Server
) -> None:
    page.goto(f"/portal/deployments/{deployment.name}")
    page.fill("#rpm", "2")
    page.click("text=Save limits")
    expect(page.locator("#quotas-status")).to_contain_text("Saved: 2 requests")
    statuses = [chat(deployment.endpoint, deployment.keys["secondary"]).status_code for _ in range(3)]
    assert 429 in statuses, statuses
    with api(server) as admin:
        shown = admin.get(f"/deployments/{deployment.name}").json()
        restored = admin.patch(f"/deployments/{deployment.name}", json={"requests_per_minute": 1000})
    assert shown["requests_per_minute"] == 2
    assert {k["hint"] for k in shown["keys"]} == {k[-4:] for k in deployment.keys.values()}
    assert restored.status_code == 200  # the next tests chat again


def test_the_usage_chart_counts_the_requests(page: Page, deployment: Deployed, server: Server) -> None:
    with api(server) as admin:
        total = admin.get("/usage", params={"deployment": deployment.name}).json()["total"]
    page.goto(f"/portal/usage?deployment={deployment.name}&since=24h")
    bars = page.locator("#chart-requests_per_day rect[data-series=requests]")
    counted = sum(float(v) for v in bars.evaluate_all("(rs) => rs.map((r) => r.dataset.value)"))
    assert counted == total["requests"] >= 5
    expect(page.locator("#total-requests")).to_have_text(str(total["requests"]))
    expect(page.locator("#total-blocked")).not_to_have_text("0")  # the blocked prompt
    with page.expect_download() as download:
        page.click("#csv")
    lines = Path(download.value.path()).read_text().strip().splitlines()
    assert (
        lines[0].startswith("day,deployment,requests")
        and sum(int(x.split(",")[2]) for x in lines[1:]) == counted
    )


def test_live_load_is_refreshed_while_the_page_is_open(page: Page, deployment: Deployed) -> None:
    page.goto("/portal/deployments")
    row = page.locator(f"tr[data-deployment='{deployment.name}']")
    expect(row.locator(".load-running")).to_have_text("0 / 0")
    expect(row.locator(".load-rate")).to_have_text("0.0")


def test_phone_width_and_keyboard(page: Page, deployment: Deployed) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/portal/catalog", "/portal/deployments", f"/portal/deployments/{deployment.name}",
                 f"/portal/playground?deployment={deployment.name}", "/portal/usage"):  # fmt: skip
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, (path, overflow)
    page.goto(f"/portal/playground?deployment={deployment.name}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    set_parameter(page, "#max_tokens", "8")
    page.focus("#prompt")
    page.keyboard.type("Hi")
    page.keyboard.press("Enter")
    expect(page.locator("#history .msg.user")).to_have_count(1)
    expect(page.locator("#history .msg.assistant .stats")).to_be_visible()


def test_delete_the_deployment(page: Page, deployment: Deployed) -> None:
    page.goto(f"/portal/deployments/{deployment.name}")
    page.click("#delete")
    expect(page.locator("#delete-confirm")).to_be_disabled()
    page.fill("#delete-confirm-name", deployment.name)
    page.click("#delete-confirm")
    expect(page.locator("h1")).to_have_text("Deployments")
    expect(page.locator(f"tr[data-deployment='{deployment.name}']")).to_have_count(0)
    assert chat(deployment.endpoint, deployment.keys["secondary"]).status_code in (401, 404)
    page.goto("/portal/usage?since=24h")
    expect(page.locator(f"select[name=deployment] option[value='{deployment.name}']")).to_have_count(1)
