"""The platform end to end: real `aimi serve` processes with the embedded SmolLM2 model, driven with
the `azure-ai-inference` SDK the way a user would. Two deployments with keys of their own, a key
rotated while clients keep calling, quotas counted exactly (in one process, and shared through Redis
by two), a usage ledger equal to the usage of the responses to the token, and a restart that loses
nothing.

Generations are tiny (the model runs on a couple of shared CPU cores); deployments get names of their
own per run, because quota windows in Redis outlive a test run by two minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import ChatCompletions, UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from tests.conftest import TEST_KEY, Server, settled_ledger, start_server, stop_server
from tests.databases import BACKENDS, POSTGRES_URL, fresh_postgres_schema, postgres_url

pytestmark = pytest.mark.e2e

MODEL = "SmolLM2-135M-Instruct"
ADMIN_KEY = "admin-key-for-the-platform-tests"
REDIS_URL = os.environ.get("AIMI_TEST_REDIS_URL")
SERVE = ("--threads", "1")
"""One thread per server: the tests run several servers on a couple of cores shared with others."""
MESSAGES = [UserMessage(content="Say hi.")]
WAIT_S = 120.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def aimi(*args: str) -> str:
    """`aimi ARGS` as its own process beside the running servers (told everything by its flags, as
    they are); its output."""
    done = subprocess.run(
        [sys.executable, "-m", "aimi", *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("AIMI_")},
        timeout=WAIT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@dataclass(frozen=True)
class Deployment:
    server: Server
    name: str
    keys: dict[str, str]

    def client(self, key: str | None = None) -> ChatCompletionsClient:
        """The SDK as the docs show it; no retries, so every 429 is seen."""
        return ChatCompletionsClient(
            endpoint=f"{self.server.base_url}/deployments/{self.name}",
            credential=AzureKeyCredential(key or self.keys["primary"]),
            retry_total=0,
        )


def admin(server: Server) -> httpx.Client:
    return httpx.Client(base_url=f"{server.base_url}/api", headers={"api-key": ADMIN_KEY}, timeout=WAIT_S)


def create(server: Server, prefix: str, **quota: int) -> Deployment:
    """A deployment of the embedded model through the management API, in a project of its own (one
    deployment per model per project)."""
    name = unique(prefix)
    with admin(server) as api:
        response = api.post("/deployments", json={"project": name, "model": MODEL, "name": name, **quota})
    assert response.status_code == 201, response.text
    return Deployment(server, name, {k["which"]: k["key"] for k in response.json()["keys"]})


def regenerate(server: Server, deployment: str, which: str) -> str:
    with admin(server) as api:
        response = api.post(f"/deployments/{deployment}/keys/{which}/regenerate")
    assert response.status_code == 200, response.text
    return str(response.json()["key"])


def usage_total(server: Server, deployment: str) -> dict[str, Any]:
    with admin(server) as api:
        response = api.get("/usage", params={"deployment": deployment})
    assert response.status_code == 200, response.text
    return response.json()["total"]  # type: ignore[no-any-return]


def ask(client: ChatCompletionsClient, max_tokens: int = 1, **options: Any) -> ChatCompletions:
    return client.complete(messages=MESSAGES, max_tokens=max_tokens, temperature=0, **options)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with its data dir, the admin key, and the quotas in process; it serves the
    embedded model as `smollm2` (key TEST_KEY) in project `default`."""
    running = start_server(tmp_path_factory.mktemp("platform"), *SERVE, env={"AIMI_ADMIN_KEY": ADMIN_KEY})
    yield running
    stop_server(running)


def deploy_with_the_cli(server: Server, project: str, name: str) -> Deployment:
    """`aimi deployments create` in a process of its own, on the running server's data dir."""
    output = aimi("deployments", "create", "--project", project, "--model", MODEL, "--name", name,
                  "--data-dir", str(server.data_dir))  # fmt: skip
    keys = dict(line.split(" key:") for line in output.splitlines() if " key:" in line)
    return Deployment(server, name, {which: key.strip() for which, key in keys.items()})


def until_served(server: Server, deployment: str) -> None:
    """Until `server` knows `deployment`: asked without a key it says 401, not 404 (and counts no
    quota). A server re-reads the deployments at most once a second on requests for unknown ones."""
    deadline = time.monotonic() + WAIT_S
    while (status := httpx.get(f"{server.base_url}/deployments/{deployment}/info").status_code) == 404:
        assert time.monotonic() < deadline
        time.sleep(0.25)
    assert status == 401


@pytest.fixture(scope="module")
def second(platform: Server) -> Deployment:
    """A second deployment of the same model, made with the CLI while the server runs; in another
    project, since a project has one deployment per model."""
    made = deploy_with_the_cli(platform, "team-b", "second")
    until_served(platform, made.name)
    return made


# -- two deployments, their own keys -------------------------------------------------------------


def test_each_deployment_answers_its_own_key_through_the_sdk(platform: Server, second: Deployment) -> None:
    first = Deployment(platform, "smollm2", {"primary": TEST_KEY})
    for deployment in (first, second):
        with deployment.client() as client:
            response = ask(client, max_tokens=2)
            assert response.model == MODEL
            assert isinstance(response.choices[0].message.content, str)
            assert 1 <= response.usage.completion_tokens <= 2
            assert client.get_model_info().model_name == MODEL
    with second.client(second.keys["secondary"]) as client:
        assert ask(client).usage.completion_tokens == 1


def test_a_key_cannot_open_the_other_deployment(platform: Server, second: Deployment) -> None:
    first = Deployment(platform, "smollm2", {"primary": TEST_KEY})
    for deployment, key in [
        (second, TEST_KEY),
        (first, second.keys["primary"]),
        (first, second.keys["secondary"]),
    ]:
        with deployment.client(key) as client, pytest.raises(ClientAuthenticationError) as error:
            ask(client)
        assert error.value.status_code == 401
    with admin(platform) as api:  # and a deployment key is no admin key
        assert api.get("/deployments", headers={"api-key": second.keys["primary"]}).status_code == 401


# -- rotation ------------------------------------------------------------------------------------


class Caller(threading.Thread):
    """Calls a deployment with one key, again and again, until stopped; keeps every outcome."""

    def __init__(self, deployment: Deployment, key: str) -> None:
        super().__init__(daemon=True)
        self.deployment = deployment
        self.key = key
        self.answered = 0
        self.failures: list[BaseException] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.deployment.client(self.key) as client:
            while not self.stopping.is_set():
                try:
                    ask(client)
                    self.answered += 1
                except Exception as exc:
                    self.failures.append(exc)

    def wait_for_more(self, than: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.answered <= than and not self.failures and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.answered > than, self.failures

    def stop(self) -> None:
        self.stopping.set()
        self.join(WAIT_S)


def test_rotating_each_key_in_turn_while_clients_call_fails_no_request(platform: Server) -> None:
    deployment = create(platform, "rotate")
    old = dict(deployment.keys)
    on_secondary = Caller(deployment, old["secondary"])
    on_secondary.start()
    try:
        on_secondary.wait_for_more(0)
        primary = regenerate(platform, deployment.name, "primary")
        calls = on_secondary.answered
        with deployment.client(old["primary"]) as client, pytest.raises(ClientAuthenticationError):
            ask(client)
        on_secondary.wait_for_more(calls)  # still answering after the rotation
        on_primary = Caller(deployment, primary)  # the clients move over to the new primary key
        on_primary.start()
        on_primary.wait_for_more(0)
    finally:
        on_secondary.stop()
    try:
        regenerate(platform, deployment.name, "secondary")
        calls = on_primary.answered
        with deployment.client(old["secondary"]) as client, pytest.raises(ClientAuthenticationError):
            ask(client)
        on_primary.wait_for_more(calls)
    finally:
        on_primary.stop()
    assert on_secondary.failures == []
    assert on_primary.failures == []
    assert on_secondary.answered >= 2 and on_primary.answered >= 2


# -- quotas --------------------------------------------------------------------------------------


@dataclass
class Burst:
    answered: list[ChatCompletions]
    refused: list[HttpResponseError]


def at_once(clients: list[ChatCompletionsClient]) -> list[ChatCompletions | HttpResponseError]:
    """One request from each client, all at the same moment."""
    together = threading.Barrier(len(clients))

    def call(client: ChatCompletionsClient) -> ChatCompletions | HttpResponseError:
        together.wait()
        try:
            return ask(client)
        except HttpResponseError as exc:
            return exc

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(call, clients))


def burst(clients: list[ChatCompletionsClient]) -> Burst:
    """One request from each client, all at once: who was answered, who was refused with a 429."""
    outcomes = at_once(clients)
    result = Burst(
        [o for o in outcomes if isinstance(o, ChatCompletions)],
        [o for o in outcomes if isinstance(o, HttpResponseError)],
    )
    assert [e.status_code for e in result.refused] == [429] * len(result.refused), result.refused
    return result


def retry_after(error: HttpResponseError) -> int:
    assert error.response is not None
    value = error.response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)


def test_a_small_quota_admits_exactly_its_requests_from_concurrent_clients(platform: Server) -> None:
    deployment = create(platform, "quota", requests_per_minute=3)
    with ExitStack() as stack:
        clients = [stack.enter_context(deployment.client()) for _ in range(10)]
        result = burst(clients)
    assert (len(result.answered), len(result.refused)) == (3, 7)
    assert all(1 <= retry_after(e) <= 60 for e in result.refused)
    assert usage_total(platform, deployment.name)["requests"] == 3


def remaining(response: httpx.Response) -> tuple[int, int]:
    return (
        int(response.headers["x-ratelimit-remaining-requests"]),
        int(response.headers["x-ratelimit-remaining-tokens"]),
    )


def test_every_answer_says_what_is_left_of_the_quota(platform: Server) -> None:
    deployment = create(platform, "headers", requests_per_minute=10, tokens_per_minute=5000)
    url = f"{platform.base_url}/deployments/{deployment.name}/chat/completions"
    body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}
    headers = {"api-key": deployment.keys["primary"]}
    with httpx.Client(timeout=WAIT_S) as http:
        first = http.post(url, json=body, headers=headers)
        p1, c1 = first.json()["usage"]["prompt_tokens"], first.json()["usage"]["completion_tokens"]
        assert remaining(first) == (9, 5000 - (p1 + 4))  # reserved: the prompt and max_tokens
        second = http.post(url, json=body, headers=headers)
        p2 = second.json()["usage"]["prompt_tokens"]
        assert remaining(second) == (8, 5000 - (p1 + c1) - (p2 + 4))  # the first one settled
        with http.stream("POST", url, json=body | {"stream": True}, headers=headers) as streamed:
            assert streamed.status_code == 200
            assert remaining(streamed)[0] == 7
            streamed.read()


def test_a_refused_request_says_when_to_retry_and_what_is_left(platform: Server) -> None:
    deployment = create(platform, "refusal", requests_per_minute=1)
    url = f"{platform.base_url}/deployments/{deployment.name}/chat/completions"
    body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1}
    with httpx.Client(timeout=WAIT_S, headers={"api-key": deployment.keys["primary"]}) as http:
        assert http.post(url, json=body).status_code == 200
        response = http.post(url, json=body)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "429"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert remaining(response)[0] == 0  # "on every response", the refusals too


@contextmanager
def shared_database() -> Iterator[dict[str, str]]:
    """AIMI_* for servers sharing one database: PostgreSQL when the suite has one, else the SQLite
    file of the data dir that `start_server(tmp_path)` gives them all."""
    if POSTGRES_URL:
        with fresh_postgres_schema() as schema:
            yield {"AIMI_DATABASE_URL": postgres_url(schema)}
    else:
        yield {}


@pytest.mark.skipif(not REDIS_URL, reason="AIMI_TEST_REDIS_URL not set: run scripts/services.sh")
def test_two_servers_sharing_redis_admit_exactly_the_quota_between_them(tmp_path: Path) -> None:
    assert REDIS_URL is not None
    with shared_database() as database, ExitStack() as stack:
        env = {"AIMI_REDIS_URL": REDIS_URL, "AIMI_ADMIN_KEY": ADMIN_KEY, **database}
        servers = []
        for _ in range(2):
            server = start_server(tmp_path, *SERVE, env=env)
            stack.callback(stop_server, server)
            servers.append(server)
        made = create(servers[0], "shared", requests_per_minute=3)
        # The second server learns of the deployment before the burst; what a burst of first
        # requests meets is tested on its own below.
        until_served(servers[1], made.name)
        on_each = [Deployment(server, made.name, made.keys) for server in servers]
        clients = [stack.enter_context(on_each[i % 2].client()) for i in range(10)]
        result = burst(clients)
        assert (len(result.answered), len(result.refused)) == (3, 7)
        for deployment in on_each:  # neither server has anything left to give
            with deployment.client() as client, pytest.raises(HttpResponseError) as error:
                ask(client)
            assert error.value.status_code == 429
        assert usage_total(servers[1], made.name)["requests"] == 3


def test_a_burst_of_first_requests_to_a_deployment_made_beside_the_server_is_served(platform: Server) -> None:
    """The server learns of a deployment another process made (the CLI, or a second server) from the
    first request that names it; requests that arrive meanwhile must wait for it, not get a 404."""
    name = unique("burst")
    deployment = deploy_with_the_cli(platform, name, name)
    time.sleep(1.5)  # past the once-a-second limit on re-reading the deployments
    with ExitStack() as stack:
        clients = [stack.enter_context(deployment.client()) for _ in range(5)]
        outcomes = at_once(clients)
    assert [getattr(o, "status_code", 200) for o in outcomes] == [200] * 5, outcomes


# -- the usage ledger ----------------------------------------------------------------------------


def test_the_ledger_matches_the_usage_of_the_responses_to_the_token(platform: Server) -> None:
    deployment = create(platform, "ledger")
    usages: list[tuple[int, int]] = []
    with deployment.client() as client:
        for max_tokens in (3, 5):
            response = ask(client, max_tokens=max_tokens)
            usages.append((response.usage.prompt_tokens, response.usage.completion_tokens))
        with ask(client, max_tokens=4, stream=True) as stream:
            final = [update.usage for update in stream if update.usage is not None]
        assert len(final) == 1
        usages.append((final[0].prompt_tokens, final[0].completion_tokens))
        # Aborted: the client goes away after the first update, long before 64 tokens.
        aborted = ask(client, max_tokens=64, stream=True, model_extras={"ignore_eos": True})
        next(iter(aborted))
        aborted.close()

    rows = settled_ledger(platform, deployment.name, at_least=4, wait_s=WAIT_S)
    assert [(r.streamed, r.status) for r in rows] == [(False, 200), (False, 200), (True, 200), (True, 200)]
    assert [(r.prompt_tokens, r.completion_tokens) for r in rows[:3]] == usages
    cancelled = rows[3]
    assert cancelled.finish_reason == "cancelled"
    assert cancelled.prompt_tokens == usages[0][0]  # the same messages
    assert 1 <= cancelled.completion_tokens < 64
    assert all(r.key_id is not None and r.cost > 0 for r in rows)

    prompt = sum(p for p, _ in usages) + cancelled.prompt_tokens
    completion = sum(c for _, c in usages) + cancelled.completion_tokens
    total = usage_total(platform, deployment.name)
    assert (total["requests"], total["prompt_tokens"], total["completion_tokens"]) == (4, prompt, completion)
    printed = aimi("usage", "--deployment", deployment.name, "--data-dir", str(platform.data_dir))
    [total_row] = [line for line in printed.splitlines() if "(total)" in line]
    cells = [cell.strip() for cell in total_row.strip().strip("│").split("│")]
    assert cells[2:6] == ["4", str(prompt), str(completion), str(prompt + completion)]


# -- restarts ------------------------------------------------------------------------------------


def snapshot(server: Server) -> dict[str, Any]:
    """What the management API says about everything, but the server's own address and the key that
    `start_server` gives `aimi serve` on its command line again (tests/platform/test_quickstart.py)."""
    with admin(server) as api:
        deployments = api.get("/deployments").json()
        for d in deployments:
            d.pop("endpoint")
            d["keys"] = [
                k
                for k in api.get(f"/deployments/{d['name']}/keys").json()
                if (d["name"], k["which"]) != ("smollm2", "primary")
            ]
        return {
            "deployments": deployments,
            "usage": api.get("/usage").json(),
            "models": api.get("/models").json(),
        }


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restart_loses_nothing(tmp_path: Path, backend: str) -> None:
    with ExitStack() as stack:
        env: dict[str, str] = {}
        if backend == "postgresql":
            env["AIMI_DATABASE_URL"] = postgres_url(stack.enter_context(fresh_postgres_schema()))
        before = start_server(tmp_path, *SERVE, env=env | {"AIMI_ADMIN_KEY": ADMIN_KEY})
        try:
            kept = create(before, "kept", requests_per_minute=50)
            with kept.client() as client:
                answered = ask(client, max_tokens=2)
            secondary = regenerate(before, kept.name, "secondary")
            was = snapshot(before)
        finally:
            stop_server(before)
        # The admin key is not given again: the one in the database still opens the API.
        after = start_server(tmp_path, *SERVE, env=env)
        stack.callback(stop_server, after)
        assert snapshot(after) == was
        assert was["usage"]["total"]["requests"] == 1
        assert was["usage"]["total"]["completion_tokens"] == answered.usage.completion_tokens
        for key in (kept.keys["primary"], secondary):
            with Deployment(after, kept.name, kept.keys).client(key) as client:
                assert ask(client).usage.completion_tokens == 1
        rotated_out = Deployment(after, kept.name, kept.keys).client(kept.keys["secondary"])
        with rotated_out as client, pytest.raises(ClientAuthenticationError):
            ask(client)
        assert usage_total(after, kept.name)["requests"] == 3
