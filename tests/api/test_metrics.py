"""`GET /metrics` (`aimi.api.metrics`): behind the admin key, one sample per engine, deployments listed."""

from __future__ import annotations

import re

import httpx
import pytest

from aimi.api.metrics import engine_label
from tests.api.checks import assert_error
from tests.api.conftest import ADMIN_KEY
from tests.conftest import TEST_KEY

HI = {"messages": [{"role": "user", "content": "hi"}]}


def samples(text: str, metric: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(rf"{metric}[{{ ]", line)]


@pytest.mark.parametrize(
    "headers",
    [{}, {"api-key": TEST_KEY}, {"authorization": f"Bearer {TEST_KEY}"}, {"api-key": "x" * 32}],
    ids=["no key", "a deployment key", "a deployment key as bearer", "a wrong key"],
)
@pytest.mark.anyio
async def test_metrics_need_the_admin_key(admin_http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await admin_http.get("/metrics", headers=headers)
    body = assert_error(response, 401, "Unauthorized")
    assert "fake" not in response.text
    assert body["error"]["status"] == 401


@pytest.mark.parametrize(
    "headers", [{"api-key": ADMIN_KEY}, {"authorization": f"Bearer {ADMIN_KEY}"}], ids=["api-key", "bearer"]
)
@pytest.mark.anyio
async def test_metrics_answer_the_admin_key_as_a_header_or_a_bearer_token(
    admin_http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await admin_http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.anyio
async def test_metrics_report_an_engine_once_with_its_source_and_model(admin_http: httpx.AsyncClient) -> None:
    await admin_http.post("/chat/completions", json=HI, headers={"api-key": TEST_KEY})
    text = (await admin_http.get("/metrics", headers={"api-key": ADMIN_KEY})).text
    assert samples(text, "aimi_engine_requests_total") == [
        'aimi_engine_requests_total{engine="embedded",model="SmolLM2-135M-Instruct"} 1.0'
    ]
    assert len(samples(text, "aimi_engine_prefix_cache_hit_rate")) == 1
    for counter in ("prompt_tokens_restored", "jumped_tokens"):  # the prompt cache, jump-forward
        assert len(samples(text, f"aimi_engine_{counter}_total")) == 1
    for gauge in ("prompt_cache_bytes", "prompt_cache_entries"):  # what the prompt cache holds now
        assert len(samples(text, f"aimi_engine_{gauge}")) == 1


@pytest.mark.anyio
async def test_deployments_sharing_an_engine_do_not_repeat_its_counters(
    admin_http: httpx.AsyncClient,
) -> None:
    """A second deployment of the same model shares the engine: its load is not counted twice (a
    deployment with no traffic used to show the other's waiting requests)."""
    created = await admin_http.post(
        "/api/deployments",
        json={"project": "p", "model": "SmolLM2-135M-Instruct", "name": "second"},
        headers={"api-key": ADMIN_KEY},
    )
    assert created.status_code == 201, created.text
    await admin_http.post("/chat/completions", json=HI, headers={"api-key": TEST_KEY})
    text = (await admin_http.get("/metrics", headers={"api-key": ADMIN_KEY})).text
    for metric in ("aimi_engine_requests_total", "aimi_engine_waiting_requests", "aimi_engine_slots"):
        assert len(samples(text, metric)) == 1, text
    listed = samples(text, "aimi_deployment_info")
    assert sorted(listed) == [
        f'aimi_deployment_info{{deployment="{name}",engine="embedded",model="SmolLM2-135M-Instruct"}} 1.0'
        for name in ("fake", "second")
    ]


@pytest.mark.parametrize(
    ("source", "label"),
    [
        ("embedded", "embedded"),
        ("/models/a.gguf", "/models/a.gguf"),
        ("http://vllm.internal:8000/v1#model=m", "http://vllm.internal:8000/v1"),
        ("https://host/v1?token=secret", "https://host/v1"),
    ],
)
def test_an_engine_label_keeps_no_query_or_fragment_of_a_source_url(source: str, label: str) -> None:
    assert engine_label(source) == label
