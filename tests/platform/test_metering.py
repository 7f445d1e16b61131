"""`aimi.platform.metering`: a request's quota admission, and after it ends (however it ends) the
settlement of its reservation and its row in the ledger."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

from aimi.errors import RateLimited
from aimi.platform.deployments import Created, DeploymentStore
from aimi.platform.inflight import InFlight
from aimi.platform.metering import DeploymentMeter
from aimi.platform.quotas import MemoryQuotaStore
from aimi.platform.usage import UsageEntry, UsageLedger

pytestmark = pytest.mark.anyio


@pytest.fixture
def created(deployments: DeploymentStore, gguf: Path) -> Created:
    return deployments.create(
        project="p",
        model="Mistral-Large",
        name="chat",
        source=str(gguf),
        requests_per_minute=5,
        tokens_per_minute=100,
    )


def meter_for(
    created: Created,
    deployments: DeploymentStore,
    quotas: MemoryQuotaStore,
    ledger: UsageLedger,
    inflight: InFlight | None = None,
    **flags: bool,
) -> DeploymentMeter:
    d = created.deployment
    return DeploymentMeter(
        deployment=d,
        offer=deployments.offer(d),
        key_id=41,
        quotas=quotas,
        ledger=ledger,
        streamed=flags.get("streamed", False),
        inflight=inflight,
    )


async def test_admission_reserves_tokens_against_the_deployments_quota(
    created: Created, deployments: DeploymentStore, ledger: UsageLedger
) -> None:
    quotas = MemoryQuotaStore()
    meter = meter_for(created, deployments, quotas, ledger)
    state = await meter.admit(60)
    assert (state.remaining_requests, state.remaining_tokens) == (4, 40)
    assert meter.quota == state
    with pytest.raises(RateLimited):
        await meter_for(created, deployments, quotas, ledger).admit(50)


async def test_finishing_settles_to_the_tokens_used_and_writes_the_ledger_row(
    created: Created, deployments: DeploymentStore, ledger: UsageLedger
) -> None:
    quotas = MemoryQuotaStore()
    meter = meter_for(created, deployments, quotas, ledger, streamed=True)
    await meter.admit(90)
    await meter.finish(prompt_tokens=20, completion_tokens=3, finish_reason="cancelled", status=200)
    after = await meter_for(created, deployments, quotas, ledger).admit(70)
    assert after.remaining_tokens == 100 - 23 - 70
    [row] = ledger.records(deployment="chat")
    assert (row.project_name, row.model_name, row.key_id, row.streamed) == ("p", "Mistral-Large", 41, True)
    assert (row.prompt_tokens, row.completion_tokens, row.finish_reason, row.status) == (
        20,
        3,
        "cancelled",
        200,
    )
    assert row.latency_ms >= 0
    assert row.cost == deployments.offer(created.deployment).cost(20, 3) == Decimal("0.000116")


async def test_a_request_that_failed_before_admission_is_still_recorded(
    created: Created, deployments: DeploymentStore, ledger: UsageLedger
) -> None:
    meter = meter_for(created, deployments, MemoryQuotaStore(), ledger)
    await meter.finish(prompt_tokens=0, completion_tokens=0, finish_reason=None, status=503)
    [row] = ledger.records()
    assert (row.status, row.finish_reason, row.prompt_tokens, row.completion_tokens) == (503, None, 0, 0)


class BrokenLedger(UsageLedger):
    def __init__(self) -> None:
        pass

    def record(self, entry: UsageEntry) -> None:
        raise RuntimeError("the database went away")


async def test_a_ledger_that_fails_never_breaks_the_answer_and_is_logged(
    created: Created, deployments: DeploymentStore, caplog: pytest.LogCaptureFixture
) -> None:
    meter = meter_for(created, deployments, MemoryQuotaStore(), BrokenLedger())
    await meter.admit(10)
    with caplog.at_level(logging.ERROR, logger="aimi.platform"):
        await meter.finish(prompt_tokens=1, completion_tokens=1, finish_reason="stop", status=200)
    assert "could not meter a request on chat" in caplog.text


async def test_with_a_recorder_the_row_exists_from_admission_and_follows_the_answer(
    created: Created, deployments: DeploymentStore, ledger: UsageLedger
) -> None:
    quotas = MemoryQuotaStore()
    inflight = InFlight(ledger, quotas)
    meter = meter_for(created, deployments, quotas, ledger, inflight)
    await meter.admit(60, prompt_tokens=20)
    await inflight.written()  # written beside the answer's first steps, not before them
    [row] = ledger.records()
    assert (row.state, row.prompt_tokens, row.reserved_tokens) == ("in_progress", 20, 60)
    assert row.reservation is not None
    meter.progress(4)
    await inflight.flush()
    [row] = ledger.records()
    assert (row.completion_tokens, row.cost) == (4, deployments.offer(created.deployment).cost(20, 4))
    await meter.finish(prompt_tokens=20, completion_tokens=5, finish_reason="stop", status=200)
    await inflight.written()  # closed after the answer, not before it
    [row] = ledger.records()
    assert (row.state, row.completion_tokens, row.status) == ("completed", 5, 200)
