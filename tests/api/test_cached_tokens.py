"""`usage.prompt_tokens_details.cached_tokens` on every answer, streamed or not, on both routes."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.anyio

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.mark.parametrize("route", ["/chat/completions", "/v1/chat/completions"])
async def test_a_non_streamed_answer_reports_its_cached_prompt_tokens(
    client: httpx.AsyncClient, route: str
) -> None:
    usage = (await client.post(route, json=BODY)).json()["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


@pytest.mark.parametrize("route", ["/chat/completions", "/v1/chat/completions"])
async def test_the_last_chunk_of_a_stream_reports_its_cached_prompt_tokens(
    client: httpx.AsyncClient, route: str
) -> None:
    response = await client.post(route, json={**BODY, "stream": True})
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
