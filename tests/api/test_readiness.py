"""`/readyz`: ready once started, `draining` from the first shutdown signal, `degraded` while the
deployments cannot be read."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from aimi.api.app import create_app
from aimi.api.services import services_of
from tests.conftest import fake_settings
from tests.fakes import ScriptedEngine

pytestmark = pytest.mark.anyio


async def test_readiness_turns_draining_at_the_first_shutdown_signal_and_new_requests_get_503(
    tmp_path: Path,
) -> None:
    app = create_app(fake_settings(tmp_path), engine=ScriptedEngine())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aimi.test") as http:
            assert (await http.get("/readyz")).json() == {"status": "ready"}
            drained = services_of(app).begin_shutdown()
            assert drained is not None
            await drained
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
            late = await http.post(
                "/chat/completions",
                headers={"api-key": "k" * 32},
                json={"messages": [{"role": "user", "content": "hi"}]},
            )
            assert late.status_code == 503
            assert late.json()["error"]["code"] == "ServiceUnavailable"
            assert int(late.headers["retry-after"]) >= 1


async def test_readiness_is_degraded_while_the_deployments_cannot_be_read(tmp_path: Path) -> None:
    app = create_app(fake_settings(tmp_path), engine=ScriptedEngine())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aimi.test") as http:
            services_of(app).fleet.sync_error = "the deployments could not be read (OperationalError: gone)"
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "degraded",
                "reason": "the deployments could not be read (OperationalError: gone)",
            }
