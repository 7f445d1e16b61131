"""The `aimi serve` process itself: start-up banner, readiness, clean shutdown."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.e2e


def test_info_reports_the_embedded_model(server: Server) -> None:
    response = httpx.get(f"{server.endpoint}/info", headers={"api-key": server.key})
    assert response.status_code == 200
    assert response.json() == {
        "model_name": "SmolLM2-135M-Instruct",
        "model_type": "chat-completions",
        "model_provider_name": "HuggingFaceTB",
    }
