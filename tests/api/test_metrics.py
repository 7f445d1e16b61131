from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_metrics_expose_engine_counters_per_deployment(client: httpx.AsyncClient) -> None:
    await client.post("/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'aimi_engine_requests_total{deployment="fake"} 1.0' in response.text
    assert 'aimi_engine_prefix_cache_hit_rate{deployment="fake"}' in response.text
