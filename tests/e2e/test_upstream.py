"""A deployment whose source is another server's URL, end to end: one `aimi serve` with the embedded
SmolLM2 model is the upstream, a second `aimi serve` forwards a deployment to it, and the
`azure-ai-inference` SDK calls the second. The text is the upstream's, the usage is the upstream's to
the token, the second server keeps its own keys, content safety and ledger (with cost), forced tool
calls come back as tool calls, and a client that goes away closes the upstream's stream too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import jsonschema
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import (
    ChatCompletionsNamedToolChoice,
    ChatCompletionsNamedToolChoiceFunction,
    ChatCompletionsToolChoicePreset,
    ChatCompletionsToolDefinition,
    FunctionDefinition,
    UserMessage,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from aimi.db.tables import UsageRecord
from tests.conftest import TEST_KEY, Server, free_port, settled_ledger, start_server, stop_server

pytestmark = pytest.mark.e2e

MODEL = "SmolLM2-135M-Instruct"
ADMIN_KEY = "admin-key-for-the-upstream-tests"
SERVE = ("--threads", "1")
WAIT_S = 120.0
FLIGHT = ChatCompletionsToolDefinition(
    function=FunctionDefinition(
        name="get_flight_info",
        description="Returns the next flight between two cities.",
        parameters={
            "type": "object",
            "properties": {"origin_city": {"type": "string"}, "destination_city": {"type": "string"}},
            "required": ["origin_city", "destination_city"],
        },
    )
)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The embedded model as deployment `smollm2` (key TEST_KEY), no content safety of its own."""
    running = start_server(
        tmp_path_factory.mktemp("upstream"), *SERVE, "--no-safety", env={"AIMI_ADMIN_KEY": ADMIN_KEY}
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, upstream: Server) -> Iterator[Server]:
    """A server with no model of its own. It sends the upstream's key to the upstream deployment's
    endpoint, and a wrong key to any other server (so the root URL of the upstream refuses it)."""
    env = {
        "AIMI_ADMIN_KEY": ADMIN_KEY,
        "AIMI_SERVES_QUICKSTART": "false",
        "AIMI_UPSTREAM_API_KEY": "a-key-the-upstream-does-not-know",
        "AIMI_UPSTREAM_API_KEYS": json.dumps({upstream.endpoint: TEST_KEY}),
    }
    running = start_server(tmp_path_factory.mktemp("front"), *SERVE, env=env)
    yield running
    stop_server(running)


def create(server: Server, name: str, source: str) -> httpx.Response:
    """A deployment of the SmolLM2 offer from `source`, in a project of its own."""
    with httpx.Client(
        base_url=f"{server.base_url}/api", headers={"api-key": ADMIN_KEY}, timeout=WAIT_S
    ) as api:
        return api.post(
            "/deployments", json={"project": name, "model": MODEL, "name": name, "source": source}
        )


@pytest.fixture(scope="module")
def forwarded(front: Server, upstream: Server) -> str:
    """The primary key of `forward`, the front's deployment served by the upstream's endpoint."""
    response = create(front, "forward", upstream.endpoint)
    assert response.status_code == 201, response.text
    return next(k["key"] for k in response.json()["keys"] if k["which"] == "primary")


def client(server: Server, deployment: str, key: str) -> ChatCompletionsClient:
    return ChatCompletionsClient(
        endpoint=f"{server.base_url}/deployments/{deployment}",
        credential=AzureKeyCredential(key),
        retry_total=0,
    )


def ledger(server: Server, deployment: str, *, at_least: int) -> list[UsageRecord]:
    """The ledger's rows for `deployment`, once there are `at_least` and all are final."""
    return settled_ledger(server, deployment, at_least=at_least, wait_s=WAIT_S)


def count(server: Server, deployment: str) -> int:
    return len(ledger(server, deployment, at_least=0))


def cost(prompt_tokens: int, completion_tokens: int) -> Decimal:
    """SmolLM2's catalog prices: $0.0001 per 1K input tokens, $0.0002 per 1K output tokens."""
    return (prompt_tokens * Decimal("0.0001") + completion_tokens * Decimal("0.0002")) / 1000


def test_a_forwarded_answer_is_the_upstream_s_with_its_usage_in_both_ledgers(
    front: Server, upstream: Server, forwarded: str
) -> None:
    before = count(upstream, upstream.deployment)
    with client(front, "forward", forwarded) as c:
        response = c.complete(messages=[UserMessage(content="Say hi.")], max_tokens=8, temperature=0)
    assert response.choices[0].message.content
    assert response.model == MODEL
    usage = (response.usage.prompt_tokens, response.usage.completion_tokens)
    assert 0 < usage[1] <= 8
    served = ledger(upstream, upstream.deployment, at_least=before + 1)[-1]
    assert (served.prompt_tokens, served.completion_tokens) == usage  # the upstream's own count
    [row] = ledger(front, "forward", at_least=1)
    assert (row.prompt_tokens, row.completion_tokens, row.status, row.streamed) == (*usage, 200, False)
    assert row.key_id is not None
    assert row.cost == cost(*usage)
    assert row.safety is not None and "input" in row.safety  # the front's own content safety ran


def test_a_forwarded_stream_arrives_in_pieces_with_the_usage_last(
    front: Server, upstream: Server, forwarded: str
) -> None:
    before = count(upstream, upstream.deployment)
    with client(front, "forward", forwarded) as c:
        updates = list(
            c.complete(
                messages=[UserMessage(content="Tell me about cats.")],
                max_tokens=12,
                temperature=0,
                stream=True,
            )
        )
    pieces = [u.choices[0].delta.content for u in updates if u.choices and u.choices[0].delta.content]
    assert len(pieces) >= 2
    usages = [u.usage for u in updates if u.usage is not None]
    assert len(usages) == 1 and usages[0] is updates[-1].usage
    served = ledger(upstream, upstream.deployment, at_least=before + 1)[-1]
    assert (served.prompt_tokens, served.completion_tokens) == (
        usages[0].prompt_tokens,
        usages[0].completion_tokens,
    )


def test_a_named_tool_choice_comes_back_as_a_tool_call(front: Server, forwarded: str) -> None:
    choice = ChatCompletionsNamedToolChoice(
        function=ChatCompletionsNamedToolChoiceFunction(name="get_flight_info")
    )
    with client(front, "forward", forwarded) as c:
        response = c.complete(
            messages=[UserMessage(content="When is the next flight from Miami to Seattle?")],
            tools=[FLIGHT],
            tool_choice=choice,
            max_tokens=120,
            temperature=0,  # sampled, the tiny model sometimes adds calls until max_tokens
        )
    assert response.choices[0].finish_reason == "tool_calls"
    [call] = response.choices[0].message.tool_calls
    assert call.function.name == "get_flight_info"
    assert call.id and call.id.isalnum()  # the upstream's id (aimi makes 9 alphanumerics)
    jsonschema.validate(json.loads(call.function.arguments), FLIGHT.function.parameters)


def test_a_required_tool_call_streams_back_as_a_tool_call(front: Server, forwarded: str) -> None:
    with client(front, "forward", forwarded) as c:
        updates = list(
            c.complete(
                messages=[UserMessage(content="Flights Miami to Seattle?")],
                tools=[FLIGHT],
                tool_choice=ChatCompletionsToolChoicePreset.REQUIRED,
                max_tokens=120,
                temperature=0,
                stream=True,
            )
        )
    last = updates[-1].choices[0]
    assert last.finish_reason == "tool_calls"
    calls = last.delta.tool_calls
    assert calls and calls[0].function.name == "get_flight_info"
    jsonschema.validate(json.loads(calls[0].function.arguments), FLIGHT.function.parameters)


def test_a_client_that_goes_away_closes_the_upstream_stream_too(
    front: Server, upstream: Server, forwarded: str
) -> None:
    before = count(upstream, upstream.deployment)
    with client(front, "forward", forwarded) as c:
        stream = c.complete(
            messages=[UserMessage(content="Tell me a long story.")],
            max_tokens=400,
            stream=True,
            model_extras={"ignore_eos": True},
        )
        next(iter(stream))
        stream.close()
    served = ledger(upstream, upstream.deployment, at_least=before + 1)[-1]
    assert served.finish_reason == "cancelled"
    assert served.completion_tokens < 400
    mine = ledger(front, "forward", at_least=1)[-1]
    assert mine.finish_reason == "cancelled"


def test_a_blocked_prompt_never_reaches_the_upstream(front: Server, upstream: Server, forwarded: str) -> None:
    before = count(upstream, upstream.deployment)
    with client(front, "forward", forwarded) as c, pytest.raises(HttpResponseError) as refused:
        c.complete(messages=[UserMessage(content="You are a worthless piece of trash and I will kill you.")])
    assert refused.value.status_code == 400
    assert refused.value.error is not None and refused.value.error.code == "content_filter"
    time.sleep(0.5)
    assert count(upstream, upstream.deployment) == before


def test_a_deployment_whose_upstream_is_down_answers_503_saying_so(front: Server) -> None:
    response = create(front, "down", f"http://127.0.0.1:{free_port()}")
    assert response.status_code == 201, response.text
    key = next(k["key"] for k in response.json()["keys"] if k["which"] == "primary")
    with client(front, "down", key) as c, pytest.raises(HttpResponseError) as refused:
        c.complete(messages=[UserMessage(content="Say hi.")], max_tokens=2)
    assert refused.value.status_code == 503
    assert "Deployment 'down' cannot be served: the upstream server cannot be reached" in str(refused.value)


def test_an_upstream_that_refuses_aimi_s_key_answers_503_not_401(front: Server, upstream: Server) -> None:
    response = create(front, "refused", upstream.base_url)  # the general key goes there, a wrong one
    assert response.status_code == 201, response.text
    key = next(k["key"] for k in response.json()["keys"] if k["which"] == "primary")
    reply = httpx.post(
        f"{front.base_url}/deployments/refused/chat/completions",
        json={"messages": [{"role": "user", "content": "Say hi."}]},
        headers={"api-key": key},
        timeout=WAIT_S,
    )
    assert reply.status_code == 503
    assert "the upstream server rejected aimi's credentials (HTTP 401" in reply.json()["error"]["message"]


def test_the_forwarded_deployment_answers_info_with_its_catalog_offer(front: Server, forwarded: str) -> None:
    reply = httpx.get(
        f"{front.base_url}/deployments/forward/info", headers={"api-key": forwarded}, timeout=WAIT_S
    )
    info: dict[str, Any] = reply.json()
    assert (info["model_name"], info["model_provider_name"]) == (MODEL, "HuggingFaceTB")
